/**
 * Picture verification in the encoder tab: when the pool sends `verify`, this
 * tab checks shards another encoder made with an engine whose bytes differ
 * run to run (WebCodecs). It fetches each shard (checked against the accepted
 * hash) and the job's source slice, measures frame count and frame times
 * (demuxed with mediabunny, no decode) and the mean luma PSNR of each shard
 * against the source scaled as the encoders scale it (one ffmpeg.wasm exec
 * with the psnr filter, verifyArgs.ts), and reports the figures; the pool
 * judges them. Owns the queue of verifications (one at a time) and their
 * counters.
 */
import { ALL_FORMATS, BufferSource, EncodedPacketSink, Input } from 'mediabunny';
import type { PeerManager } from '../net/PeerManager.ts';
import { TypedEmitter } from '../shared/events.ts';
import type { ClientMessage, VerifyMeasure, VerifyRequest } from '../shared/protocol.ts';
import type { FfmpegEngine } from './FfmpegEngine.ts';
import { fetchShardCopy } from './Replicator.ts';
import { fetchSlice } from './JobRunner.ts';
import { maxTimeError, meanLumaPsnr, psnrStatsName, sourceFramesOf, verifyArgs, verifyShardName } from './verifyArgs.ts';

export interface VerifierStats {
  /** Verifications answered with figures, and those that could not run. */
  done: number;
  failed: number;
  /** Wall time over all verifications (fetch, demux and the ffmpeg exec), ms. */
  ms: number;
}

export interface VerifierEvents {
  /** One verification answered: its figures and wall time (ms, of which `execMs` in ffmpeg). */
  verified: { verifyId: string; measures: VerifyMeasure[]; ms: number; execMs: number };
  log: { line: string };
}

/** Presentation times (s) of the first video track's packets, read without decoding. */
async function packetTimes(bytes: Uint8Array): Promise<number[]> {
  const input = new Input({ source: new BufferSource(bytes), formats: ALL_FORMATS });
  try {
    const track = await input.getPrimaryVideoTrack();
    if (!track) return [];
    const out: number[] = [];
    for await (const p of new EncodedPacketSink(track).packets(undefined, undefined, { metadataOnly: true })) out.push(p.timestamp);
    return out;
  } finally {
    input.dispose();
  }
}

export class Verifier extends TypedEmitter<VerifierEvents> {
  readonly stats: VerifierStats = { done: 0, failed: 0, ms: 0 };
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly engine: FfmpegEngine,
    private readonly peers: PeerManager,
    private readonly send: (msg: ClientMessage) => boolean,
    private readonly fetchTimeoutMs: number,
    private readonly base: string,
  ) {
    super();
  }

  /** Queues a verification; answers `verify-result` or `verify-failed`. Never throws. */
  verify(m: VerifyRequest): Promise<void> {
    this.tail = this.tail.then(() => this.run(m));
    return this.tail;
  }

  private async run(m: VerifyRequest): Promise<void> {
    const t0 = performance.now();
    try {
      if (Date.now() > m.deadline) throw new Error('its deadline passed before it could start');
      const { measures, execMs } = await this.measure(m);
      const ms = performance.now() - t0;
      this.stats.done++;
      this.stats.ms += ms;
      this.send({ type: 'verify-result', verifyId: m.verifyId, shards: measures });
      this.emit('verified', { verifyId: m.verifyId, measures, ms, execMs });
      const low = Math.min(...measures.map((x) => x.psnr));
      this.emit('log', {
        line: `verified ${measures.length} shards of ${m.job.contentId} ${m.job.rendition} in ${ms.toFixed(0)} ms (lowest PSNR ${low.toFixed(1)} dB)`,
      });
    } catch (e) {
      this.stats.failed++;
      const reason = (e as Error).message ?? String(e);
      this.send({ type: 'verify-failed', verifyId: m.verifyId, reason: reason.slice(0, 900) });
      this.emit('log', { line: `verification ${m.verifyId} failed: ${reason}` });
    }
  }

  /**
   * The figures for every shard of a request: frames (packets in the shard),
   * the largest frame time error against the source and the mean luma PSNR.
   * Throws when a shard or the slice cannot be had or ffmpeg fails.
   */
  async measure(m: VerifyRequest): Promise<{ measures: VerifyMeasure[]; execMs: number }> {
    const { bytes: slice, sliceStart } = await fetchSlice(m.job, this.base);
    const inputs: Record<string, Uint8Array> = {};
    const shardTimes: number[][] = [];
    for (const [i, s] of m.shards.entries()) {
      const tried: string[] = [];
      const key = { contentId: m.job.contentId, rendition: m.job.rendition, index: s.index };
      const bytes = await fetchShardCopy(this.peers, this.base, this.fetchTimeoutMs, { key, ...s }, tried);
      if (!bytes) throw new Error(`no good copy of shard ${s.index}: ${tried.join('; ') || 'no source'}`);
      shardTimes.push(await packetTimes(bytes));
      inputs[verifyShardName(i)] = bytes;
    }
    if (m.shards.some((s, i) => s.index !== m.job.shards[i]?.index)) throw new Error('the request lists other shards than its job');
    const sourceTimes = await packetTimes(slice);
    inputs['in.mp4'] = slice;
    const r = await this.engine.exec((dir) => verifyArgs(m.job, sliceStart, dir), inputs);
    const measures = m.job.shards.map((js, i): VerifyMeasure => {
      const stats = r.files.get(psnrStatsName(i));
      const err = maxTimeError(shardTimes[i]!, sourceFramesOf(sourceTimes, js, sliceStart));
      return {
        index: js.index,
        frames: shardTimes[i]!.length,
        psnr: stats ? meanLumaPsnr(new TextDecoder().decode(stats)).psnr : 0,
        maxTimeError: Number.isFinite(err) ? Math.min(3600, err) : 3600,
      };
    });
    return { measures, execMs: r.execMs };
  }
}
