/**
 * The server's check of an encoder's shard before the pool accepts it. The
 * encoder PUTs the bytes with its job's upload token; the intake checks that
 * the shard belongs to that job, parses it (media/validate.ts: fMP4, codec,
 * size, key frame first, frame count, duration within one frame; audio:
 * packets = samples + lead + tail), hashes it, and stages the result for the
 * encoder's shard-ready, which must match it. A shard that fails is rejected
 * over the WebSocket with the reason and counts against the encoder.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { isAudioRendition, type ShardKey } from '../src/shared/shardMap.ts';
import type { ContentStore } from './ContentStore.ts';
import { ShardcastError } from '../src/shared/errors.ts';
import { checkShard, ShardCheckError, videoShardExpectation } from './media/validate.ts';
import type { PoolManager } from './PoolManager.ts';

export interface IntakeResult {
  sha256: string;
  size: number;
  checkMs: number;
}

/** lead/tail query values: whole sample counts, or absent. */
function samplesParam(v: string | null, name: 'lead' | 'tail'): number | undefined {
  if (v === null || v === '') return undefined;
  if (!/^\d{1,7}$/.test(v)) throw new ShardcastError(name === 'lead' ? 'bad-lead' : 'bad-tail', `${name} is a whole number of samples`);
  return Number(v);
}

export class ShardIntake {
  constructor(
    private readonly store: ContentStore,
    private readonly pool: PoolManager,
    /** Keep the bytes after the check (they go to the cache on acceptance). */
    private readonly keepBytes: boolean,
  ) {}

  /**
   * The running job an upload of `k` with this Authorization header is for: checked from the request
   * head, before the body is read. Throws upload-token-required, or a ProtocolError (bad-upload-token,
   * not-in-job) the edge answers like any coded error.
   */
  target(authorization: string | undefined, k: ShardKey): ReturnType<PoolManager['uploadTarget']> {
    const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
    if (!token) throw new ShardcastError('upload-token-required', "uploads carry the job's upload token: Authorization: Bearer <job.uploadToken>");
    return this.pool.uploadTarget(token, k);
  }

  async receive(authorization: string | undefined, k: ShardKey, bytes: Uint8Array, query: URLSearchParams): Promise<IntakeResult> {
    const target = this.target(authorization, k);
    const lead = samplesParam(query.get('lead'), 'lead');
    const tail = samplesParam(query.get('tail'), 'tail');
    const content = this.store.get(k.contentId)!;
    const shard = content.map.shards[k.index]!;
    const st = shard.renditions[k.rendition]!;
    const rendition = content.map.renditions.find((r) => r.id === k.rendition)!;
    const t0 = performance.now();
    try {
      await checkShard(
        bytes,
        isAudioRendition(rendition)
          ? { kind: 'audio', spec: rendition.audio, samples: st.samples ?? 0, lead: lead ?? 0, tail: tail ?? 0 }
          : videoShardExpectation(content.map, shard, k.rendition),
      );
    } catch (e) {
      if (!(e instanceof ShardCheckError)) throw e;
      const reason = `structure check failed (${e.code}): ${e.message}`;
      this.pool.uploadRefused(target.job.id, k, reason, e.code);
      throw new ShardCheckError(e.code, reason);
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const checkMs = performance.now() - t0;
    this.pool.stage(
      target.job.id,
      k.index,
      { sha256, size: bytes.byteLength, ...(lead !== undefined && { lead }), ...(tail !== undefined && { tail }), ...(this.keepBytes && { bytes }) },
      checkMs,
    );
    return { sha256, size: bytes.byteLength, checkMs };
  }
}
