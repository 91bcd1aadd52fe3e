/** Simulated encoders for server tests: they report hashes and carry no bytes. */
import type { Job } from '../../src/shared/protocol.ts';
import { fakeHash, type WsPeer } from './wsPeer.ts';

/** Server options for tests whose fake encoders carry no bytes: no byte check before acceptance, no cross-checks. */
export const BYTELESS = { testHooks: { verifyShardBytes: false }, verifySampleRate: 0, verifyNewEncoderJobs: 0 } as const;

export const hashFor = (job: Job, index: number) => fakeHash(`${job.contentId}/${job.rendition}/${index}`);

/** `engine`: the engine@build string to report for the job's shards (none by default). */
export function finishJob(p: WsPeer, job: Job, engine?: (job: Job) => string): void {
  for (const sh of job.shards) {
    const key = { contentId: job.contentId, rendition: job.rendition, index: sh.index };
    p.send({ type: 'shard-ready', jobId: job.id, key, sha256: hashFor(job, sh.index), size: 1000 + sh.index, ...(engine && { engine: engine(job) }) });
  }
  p.send({ type: 'job-done', jobId: job.id });
}

/** Plays an honest encoder: every job it gets is finished at once, until its socket closes. */
export async function autoEncode(p: WsPeer, log: Job[], engine?: (job: Job) => string): Promise<void> {
  for (;;) {
    let job: Job;
    try {
      job = (await p.next('job', () => true, 60_000)).job;
    } catch {
      return;
    }
    log.push(job);
    finishJob(p, job, engine);
  }
}

export async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
