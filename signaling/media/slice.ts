/**
 * Source slices for encoders: a stream-copy remux (no decode, no encode) of a
 * time range of the source, starting at the key frame at or before the range,
 * so an encoder downloads seconds of source rather than the whole file.
 */
import {
  ALL_FORMATS,
  BufferTarget,
  EncodedAudioPacketSource,
  EncodedPacketSink,
  EncodedVideoPacketSource,
  FilePathSource,
  Input,
  Mp4OutputFormat,
  Output,
  type EncodedPacket,
  type InputAudioTrack,
  type InputVideoTrack,
} from 'mediabunny';
import { ShardcastError } from '../../src/shared/errors.ts';

export class SliceError extends ShardcastError<'bad-range' | 'no-track' | 'unsupported' | 'slice-too-large'> {
  override name = 'SliceError';
}

export interface SliceRequest {
  /** Content-time range wanted, seconds. */
  start: number;
  end: number;
  tracks: 'video' | 'audio' | 'both';
  /** Source-timeline time of content 0 (from the probe). */
  timeOrigin: number;
  /** Most bytes of media packets the slice may hold (its memory bound: packets, then the muxed copy); none: no bound. */
  maxBytes?: number;
}

export interface Slice {
  bytes: Uint8Array;
  /** Content time of the slice's t = 0 (its first key frame, or first audio packet). */
  sliceStart: number;
  /** Content time up to which the slice has media. */
  sliceEnd: number;
}

/** Audio carries this much extra on each side: encoders need pre-roll, and the viewer trims where runs meet. */
export const AUDIO_MARGIN = 0.1;
/** After this many packets at or past the end (in decode order), no earlier frame can still need a reference. */
const REORDER_WINDOW = 16;

/**
 * Counts packet bytes against a slice's bound as they are read, so a range
 * holding too much is refused before it is all in memory.
 */
class PacketBudget {
  private used = 0;
  constructor(private readonly max: number) {}

  /** @throws SliceError slice-too-large once the packets read pass the bound. */
  take(p: EncodedPacket): void {
    this.used += p.byteLength;
    if (this.used > this.max) {
      throw new SliceError(
        'slice-too-large',
        `this range holds more than ${(this.max / 2 ** 20).toFixed(0)} MiB of media (server option --max-slice-bytes): ask for a shorter range`,
      );
    }
  }
}

async function videoPackets(track: InputVideoTrack, from: number, to: number, budget: PacketBudget): Promise<EncodedPacket[]> {
  const sink = new EncodedPacketSink(track);
  const key = (await sink.getKeyPacket(from, { verifyKeyPackets: true })) ?? (await sink.getFirstKeyPacket());
  if (!key) throw new SliceError('no-track', 'the video track has no key frame');
  const out: EncodedPacket[] = [];
  let lastNeeded = -1;
  let pastEnd = 0;
  for await (const p of sink.packets(key)) {
    // Leading frames of an open GOP (presented before their key frame, decoded after it) reference the GOP before
    // `key`: they cannot be decoded from here, and belong to the slice that ends at `key`. The next key frame at or
    // past `to` does not end the slice: its own leading frames may be presented before `to`, and they need it.
    if (p.timestamp < key.timestamp) continue;
    budget.take(p);
    out.push(p);
    if (p.timestamp < to) {
      lastNeeded = out.length - 1;
      pastEnd = 0;
    } else if (++pastEnd >= REORDER_WINDOW) break;
  }
  // Packets past the end that precede a needed one in decode order are its references: keep them.
  return out.slice(0, lastNeeded + 1);
}

async function audioPackets(track: InputAudioTrack, from: number, to: number, budget: PacketBudget): Promise<EncodedPacket[]> {
  const sink = new EncodedPacketSink(track);
  const first = (await sink.getPacket(from)) ?? (await sink.getFirstPacket());
  if (!first) throw new SliceError('no-track', 'the audio track has no packets');
  const out: EncodedPacket[] = [];
  for await (const p of sink.packets(first)) {
    if (p.timestamp >= to) break;
    budget.take(p);
    out.push(p);
  }
  return out;
}

/** @throws SliceError bad-range unless 0 <= start < end and the range is at most 120 s. */
export function checkSliceRange(req: Pick<SliceRequest, 'start' | 'end'>): void {
  if (!(Number.isFinite(req.start) && Number.isFinite(req.end)) || req.start < 0 || req.end <= req.start) {
    throw new SliceError('bad-range', `the range must satisfy 0 <= start < end (got start=${req.start}, end=${req.end})`);
  }
  if (req.end - req.start > 120) throw new SliceError('bad-range', 'a slice covers at most 120 s; ask for smaller ranges');
}

export async function writeSourceSlice(sourcePath: string, req: SliceRequest): Promise<Slice> {
  checkSliceRange(req);
  const budget = new PacketBudget(req.maxBytes ?? Infinity);
  const input = new Input({ source: new FilePathSource(sourcePath), formats: ALL_FORMATS });
  try {
    const wantVideo = req.tracks !== 'audio';
    const wantAudio = req.tracks !== 'video';
    const vTrack = wantVideo ? await input.getPrimaryVideoTrack() : null;
    const aTrack = wantAudio ? await input.getPrimaryAudioTrack() : null;
    if (wantVideo && !vTrack) throw new SliceError('no-track', 'the source has no video track');
    if (wantAudio && !aTrack) throw new SliceError('no-track', 'the source has no audio track');
    const duration = (await input.computeDuration()) - req.timeOrigin;
    if (req.start >= duration) throw new SliceError('bad-range', `start ${req.start} is past the end of the content (${duration.toFixed(3)} s)`);

    const o = req.timeOrigin;
    const vp = vTrack ? await videoPackets(vTrack, req.start + o, req.end + o, budget) : [];
    // Audio alone gets margins; beside video it starts with the video's key frame.
    const aFrom = vp.length ? vp[0]!.timestamp : req.start + o - AUDIO_MARGIN;
    const aTo = vp.length ? req.end + o : req.end + o + AUDIO_MARGIN;
    const ap = aTrack ? await audioPackets(aTrack, aFrom, aTo, budget) : [];
    const base = vp.length ? vp[0]!.timestamp : ap.length ? ap[0]!.timestamp : req.start + o;

    const target = new BufferTarget();
    const output = new Output({ format: new Mp4OutputFormat({ fastStart: 'in-memory' }), target });
    let vSource: EncodedVideoPacketSource | undefined;
    let aSource: EncodedAudioPacketSource | undefined;
    if (vTrack && vp.length) {
      const codec = await vTrack.getCodec();
      if (!codec) throw new SliceError('unsupported', 'the video codec cannot be remuxed');
      vSource = new EncodedVideoPacketSource(codec);
      output.addVideoTrack(vSource);
    }
    if (aTrack && ap.length) {
      const codec = await aTrack.getCodec();
      if (!codec) throw new SliceError('unsupported', 'the audio codec cannot be remuxed');
      aSource = new EncodedAudioPacketSource(codec);
      output.addAudioTrack(aSource);
    }
    await output.start();
    if (vSource && vTrack) {
      const decoderConfig = (await vTrack.getDecoderConfig()) ?? undefined;
      let first = true;
      for (const p of vp) {
        await vSource.add(p.clone({ timestamp: p.timestamp - base }), first && decoderConfig ? { decoderConfig } : undefined);
        first = false;
      }
    }
    if (aSource && aTrack) {
      const decoderConfig = (await aTrack.getDecoderConfig()) ?? undefined;
      let first = true;
      for (const p of ap) {
        const ts = p.timestamp - base;
        if (ts < 0 && vSource) continue; // audio before the key frame has no place beside video
        await aSource.add(p.clone({ timestamp: Math.max(0, ts) }), first && decoderConfig ? { decoderConfig } : undefined);
        first = false;
      }
    }
    await output.finalize();
    const bytes = new Uint8Array(target.buffer!);
    const lastV = vp.reduce((m, p) => Math.max(m, p.timestamp + p.duration), -Infinity);
    const lastA = ap.reduce((m, p) => Math.max(m, p.timestamp + p.duration), -Infinity);
    return { bytes, sliceStart: base - o, sliceEnd: Math.max(lastV, lastA) - o };
  } finally {
    input.dispose();
  }
}
