/**
 * The tracks a container declares, read from its headers alone, independent of
 * the demuxer: the check that no track disappears silently. mediabunny skips
 * streams it cannot read in Ogg (Theora) and MPEG-TS (MPEG-2 video, stream
 * type 0x02) without a word, so an Ogg Theora/Vorbis upload would publish as
 * audio only (issue 17). MP4, MOV, WebM and Matroska need no census: there the
 * demuxer lists every track, with a null codec when it cannot read it.
 */
import fs from 'node:fs/promises';

export interface DeclaredTrack {
  type: 'video' | 'audio';
  /** The codec as the container names it, e.g. "theora", "mpeg2video". */
  codec: string;
}

/** Bytes read from the start of the file: Ogg puts every stream's first page first; a PMT repeats every ~100 ms. */
const HEAD_BYTES = 1 << 20;

/** Ogg: codec of a stream by its identification packet's magic (RFC 3533 and each codec's mapping). */
const OGG_MAGIC: [string, DeclaredTrack][] = [
  ['\x80theora', { type: 'video', codec: 'theora' }],
  ['\x01vorbis', { type: 'audio', codec: 'vorbis' }],
  ['OpusHead', { type: 'audio', codec: 'opus' }],
  ['\x7fFLAC', { type: 'audio', codec: 'flac' }],
  ['Speex   ', { type: 'audio', codec: 'speex' }],
  ['\x80daala', { type: 'video', codec: 'daala' }],
  ['OVP80', { type: 'video', codec: 'vp8' }],
];

function oggTracks(b: Buffer): DeclaredTrack[] {
  const out: DeclaredTrack[] = [];
  // Every stream's beginning-of-stream page comes before any other page (RFC 3533 section 4).
  for (let at = 0; at + 27 <= b.length && b.toString('latin1', at, at + 4) === 'OggS'; ) {
    const segments = b[at + 26]!;
    const body = at + 27 + segments;
    let size = 0;
    for (let i = 0; i < segments; i++) size += b[at + 27 + i]!;
    if (!(b[at + 5]! & 0x02)) break;
    const head = b.toString('latin1', body, Math.min(body + 8, b.length));
    const known = OGG_MAGIC.find(([m]) => head.startsWith(m));
    // A stream with an unknown magic: Skeleton and Kate (subtitles) carry no picture or sound.
    if (known) out.push(known[1]);
    else if (/^\x80\w+/.test(head) && !head.startsWith('\x80kate')) out.push({ type: 'video', codec: head.slice(1).replace(/\W.*$/, '') });
    at = body + size;
  }
  return out;
}

/** MPEG-TS stream types (ISO/IEC 13818-1 table 2-34 and ATSC A/52 for 0x81/0x87). */
const TS_STREAM_TYPE: Record<number, DeclaredTrack> = {
  0x01: { type: 'video', codec: 'mpeg1video' },
  0x02: { type: 'video', codec: 'mpeg2video' },
  0x10: { type: 'video', codec: 'mpeg4' },
  0x1b: { type: 'video', codec: 'h264' },
  0x24: { type: 'video', codec: 'hevc' },
  0x03: { type: 'audio', codec: 'mpeg-audio' },
  0x04: { type: 'audio', codec: 'mpeg-audio' },
  0x0f: { type: 'audio', codec: 'aac' },
  0x11: { type: 'audio', codec: 'aac-latm' },
  0x81: { type: 'audio', codec: 'ac3' },
  0x87: { type: 'audio', codec: 'eac3' },
};

/** Packet stride and first sync byte: 188-byte packets, or BDAV (.m2ts, AVCHD) 192-byte ones with a 4-byte time first. */
function packetLayout(b: Buffer): { stride: number; first: number } | undefined {
  for (const [stride, first] of [
    [188, 0],
    [192, 4],
  ] as const) {
    if ([0, 1, 2].every((i) => b[first + i * stride] === 0x47)) return { stride, first };
  }
  return undefined;
}

/** The payload of the first packet of `pid` that starts a section, from its pointer field on. */
function section(b: Buffer, pid: number): Buffer | undefined {
  const layout = packetLayout(b);
  if (!layout) return undefined;
  for (let at = layout.first; at + 188 <= b.length; at += layout.stride) {
    if (b[at] !== 0x47) return undefined;
    const start = (b[at + 1]! & 0x40) !== 0;
    if (!start || (((b[at + 1]! & 0x1f) << 8) | b[at + 2]!) !== pid) continue;
    const adaptation = (b[at + 3]! >> 4) & 0x3;
    let p = at + 4 + (adaptation & 0x2 ? 1 + b[at + 4]! : 0);
    p += 1 + b[p]!; // pointer field
    return b.subarray(p, at + 188);
  }
  return undefined;
}

function tsTracks(b: Buffer): DeclaredTrack[] {
  const pat = section(b, 0);
  if (!pat || pat[0] !== 0x00) return [];
  const patEnd = Math.min(pat.length, 3 + (((pat[1]! & 0x0f) << 8) | pat[2]!) - 4);
  let pmtPid = -1;
  for (let i = 8; i + 4 <= patEnd; i += 4) {
    if (((pat[i]! << 8) | pat[i + 1]!) !== 0) {
      pmtPid = ((pat[i + 2]! & 0x1f) << 8) | pat[i + 3]!;
      break;
    }
  }
  const pmt = pmtPid >= 0 ? section(b, pmtPid) : undefined;
  if (!pmt || pmt[0] !== 0x02) return [];
  const end = Math.min(pmt.length, 3 + (((pmt[1]! & 0x0f) << 8) | pmt[2]!) - 4);
  const out: DeclaredTrack[] = [];
  for (let i = 12 + (((pmt[10]! & 0x0f) << 8) | pmt[11]!); i + 5 <= end; ) {
    const known = TS_STREAM_TYPE[pmt[i]!];
    if (known) out.push(known);
    i += 5 + (((pmt[i + 3]! & 0x0f) << 8) | pmt[i + 4]!);
  }
  return out;
}

/**
 * The video and audio tracks `file` declares, for containers whose demuxer may skip tracks silently (`container` as
 * probe.ts names it: "ogg", "mpeg-transport-stream"); empty for the others and for headers it cannot read.
 */
export async function declaredTracks(file: string, container: string): Promise<DeclaredTrack[]> {
  if (container !== 'ogg' && container !== 'mpeg-transport-stream') return [];
  const fh = await fs.open(file, 'r');
  try {
    const b = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await fh.read(b, 0, HEAD_BYTES, 0);
    const head = b.subarray(0, bytesRead);
    return container === 'ogg' ? oggTracks(head) : tsTracks(head);
  } finally {
    await fh.close();
  }
}
