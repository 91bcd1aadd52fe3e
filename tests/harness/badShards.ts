/**
 * Shards that fail the server's structure check, one defect each, for intake
 * tests. They start from shards made the way a tab makes them (native ffmpeg
 * with the tab's command lines, tests/harness/nativeEncoder.ts; audio cut by
 * the tab's own cutter) and are remuxed by native ffmpeg with stream copy, so
 * only the one property under test changes. Native ffmpeg is the fixture
 * maker here, never the product.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { cutAudioRun, type AudioShardOut } from '../../src/encoder/audioCutter.ts';
import { audioJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import type { Job } from '../../src/shared/protocol.ts';
import { AAC_PACKET_SAMPLES } from '../../src/shared/shardMap.ts';

const run = promisify(execFile);

/** The fragmented-MP4 flags the tab's shards are written with (one init + one media segment). */
const FRAG = ['-movflags', 'frag_keyframe+empty_moov+default_base_moof'];

/**
 * Runs native ffmpeg on shard files: `inputs` are written to temp files and
 * `args(inputPaths, outPath)` builds the command line. Returns the output's bytes.
 * Throws with ffmpeg's stderr when it fails.
 */
export async function ffmpegOn(inputs: Uint8Array[], args: (ins: string[], out: string) => string[]): Promise<Uint8Array> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bad-shard-'));
  try {
    const ins = inputs.map((b, i) => {
      const f = path.join(dir, `in${i}.mp4`);
      fs.writeFileSync(f, b);
      return f;
    });
    const out = path.join(dir, 'out.mp4');
    await run('ffmpeg', ['-v', 'error', '-nostdin', '-y', ...args(ins, out)]);
    return new Uint8Array(fs.readFileSync(out));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The shard's first `n` samples of its one track, stream-copied (key frame first, `n` samples, same timing). */
export const firstSamples = (shard: Uint8Array, n: number, kind: 'v' | 'a') =>
  ffmpegOn([shard], ([i], o) => ['-i', i!, '-map', '0', '-c', 'copy', `-frames:${kind}`, String(n), ...FRAG, '-f', 'mp4', o]);

/** The same samples with every timestamp multiplied by `factor`: right frame count, wrong duration. */
export const stretched = (shard: Uint8Array, factor: number) =>
  ffmpegOn([shard], ([i], o) => ['-itsscale', String(factor), '-i', i!, '-map', '0', '-c', 'copy', ...FRAG, '-f', 'mp4', o]);

/** Two shards' tracks in one file (two tracks where a shard must hold one). */
export const muxedTogether = (a: Uint8Array, b: Uint8Array) =>
  ffmpegOn([a, b], ([i0, i1], o) => ['-i', i0!, '-i', i1!, '-map', '0', '-map', '1', '-c', 'copy', ...FRAG, '-f', 'mp4', o]);

/**
 * A copy of a fragmented-MP4 shard whose first sample is flagged as not a
 * sync sample (a P-frame start, as a cut in the middle of a GOP would give).
 * The sample's bytes are untouched: the container's claim is what the check
 * reads. Patches the flags of the first `trun` (its first-sample-flags, or the
 * first sample's own flags). Throws when the file has neither.
 */
export function firstSampleNotSync(shard: Uint8Array): Uint8Array {
  const out = new Uint8Array(shard);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  // sample_depends_on = 1 (not an I picture), sample_is_non_sync_sample = 1.
  const NON_SYNC = 0x01010000;
  const walk = (from: number, to: number): boolean => {
    let at = from;
    while (at + 8 <= to) {
      const size = dv.getUint32(at);
      const type = String.fromCharCode(...out.subarray(at + 4, at + 8));
      if (size < 8 || at + size > to) return false;
      if (type === 'moof' || type === 'traf') {
        if (walk(at + 8, at + size)) return true;
      } else if (type === 'trun') {
        const flags = dv.getUint32(at + 8) & 0xffffff;
        let p = at + 16; // header, version+flags, sample_count
        if (flags & 0x1) p += 4; // data_offset
        if (flags & 0x4) {
          dv.setUint32(p, NON_SYNC);
          return true;
        }
        // Per-sample fields, in order: duration, size, flags, composition offset.
        if (flags & 0x400) {
          if (flags & 0x100) p += 4;
          if (flags & 0x200) p += 4;
          dv.setUint32(p, NON_SYNC);
          return true;
        }
        throw new Error('the trun carries no sample flags to patch');
      }
      at += size;
    }
    return false;
  };
  if (!walk(0, out.byteLength)) throw new Error('no moof/traf/trun in the shard');
  return out;
}

/** The shard with one more top-level box of `type` appended, holding `payload` zero bytes (padding a structure check must refuse). */
export function withBoxAppended(shard: Uint8Array, type: string, payload: number): Uint8Array {
  const out = new Uint8Array(shard.byteLength + 8 + payload);
  out.set(shard);
  new DataView(out.buffer).setUint32(shard.byteLength, 8 + payload);
  out.set(new TextEncoder().encode(type), shard.byteLength + 4);
  return out;
}

/**
 * The shard with `extra` zero bytes appended inside its (first) mdat box, after
 * the samples: every box still well formed, every sample where it was, and
 * bytes no sample references hidden in the media data.
 */
export function withMdatPadding(shard: Uint8Array, extra: number): Uint8Array {
  const dv = new DataView(shard.buffer, shard.byteOffset, shard.byteLength);
  for (let at = 0; at + 8 <= shard.byteLength; at += dv.getUint32(at)) {
    if (String.fromCharCode(...shard.subarray(at + 4, at + 8)) !== 'mdat') continue;
    const end = at + dv.getUint32(at);
    const out = new Uint8Array(shard.byteLength + extra);
    out.set(shard.subarray(0, end));
    out.set(shard.subarray(end), end + extra);
    new DataView(out.buffer).setUint32(at, end - at + extra);
    return out;
  }
  throw new Error('no mdat box in the shard');
}

/**
 * Encodes an audio job the way a tab does (ffmpeg's AAC encoder on the job's
 * source slice, then the tab's cutter on the packet grid). Returns the shards
 * with their lead and tail in samples.
 */
export async function encodeAudioJob(base: string, job: Job): Promise<AudioShardOut[]> {
  const slice = await fetch(new URL(job.sourceUrl, base));
  if (!slice.ok) throw new Error(`slice: HTTP ${slice.status}`);
  const sliceStart = Number(slice.headers.get('x-slice-start'));
  const encoded = await ffmpegOn([new Uint8Array(await slice.arrayBuffer())], ([i], o) => audioJobArgs(job, sliceStart, i!, o));
  return cutAudioRun(encoded, {
    shards: job.shards.map((s) => ({ index: s.index, packets: (s.samples ?? 0) / AAC_PACKET_SAMPLES })),
    leadPackets: job.leadPackets ?? 0,
    tailPackets: job.tailPackets ?? 0,
  });
}
