/**
 * Owns the running jobs and what hangs off them: jobs by id and by peer,
 * upload tokens, uploads checked and waiting for their shard-ready, the
 * variants in flight (being encoded by a job), and failed attempts per
 * variant. Pure bookkeeping: it sends nothing and reads no clock.
 */
import { variantKeyString, type VariantKey } from '../../src/shared/variantKey.ts';
import { ProtocolError, type ActiveJob, type StagedShard } from './types.ts';

const NONE: ReadonlySet<string> = new Set();

/** What a re-queue did: the shards back in the queue and those out of attempts (to be marked failed). */
export interface Requeued {
  aj: ActiveJob;
  indices: number[];
  failed: { key: VariantKey; attempts: number }[];
}

export class JobLedger {
  private readonly active = new Map<string, ActiveJob>();
  private readonly byPeer = new Map<string, Set<string>>();
  /** upload token -> job id. */
  private readonly uploadTokens = new Map<string, string>();
  /** "jobId/index" -> the shard's checked bytes, until its shard-ready. */
  private readonly staged = new Map<string, StagedShard>();
  /** variant key -> job id while a (non-check) job encodes it. */
  private readonly inFlight = new Map<string, string>();
  /** variant key -> failed attempts so far. */
  private readonly attempts = new Map<string, number>();

  get jobs(): ReadonlyMap<string, ActiveJob> {
    return this.active;
  }

  get(jobId: string): ActiveJob | undefined {
    return this.active.get(jobId);
  }

  jobsOf(peerId: string): ReadonlySet<string> {
    return this.byPeer.get(peerId) ?? NONE;
  }

  /** The job, if it is `peerId`'s; throws ProtocolError 'unknown-job' otherwise. */
  own(peerId: string, jobId: string): ActiveJob {
    const aj = this.active.get(jobId);
    if (!aj || aj.peerId !== peerId) throw new ProtocolError('unknown-job', `job ${jobId} is not assigned to you (it may have been re-queued)`);
    return aj;
  }

  /** Records an assigned job: its token, and (unless it is a cross-check of accepted shards) its shards in flight. */
  add(aj: ActiveJob): void {
    const { job } = aj;
    if (job.uploadToken) this.uploadTokens.set(job.uploadToken, job.id);
    if (!aj.check)
      for (const s of job.shards) this.inFlight.set(variantKeyString({ contentId: job.contentId, rendition: job.rendition, index: s.index }), job.id);
    this.active.set(job.id, aj);
    let mine = this.byPeer.get(aj.peerId);
    if (!mine) this.byPeer.set(aj.peerId, (mine = new Set()));
    mine.add(job.id);
  }

  /** Forgets a job and its uploads; its shards in flight stay so (see requeue and doneShard). Returns it. */
  remove(jobId: string): ActiveJob | undefined {
    const aj = this.active.get(jobId);
    if (!aj) return undefined;
    this.active.delete(jobId);
    const mine = this.byPeer.get(aj.peerId);
    if (mine?.delete(jobId) && mine.size === 0) this.byPeer.delete(aj.peerId);
    if (aj.job.uploadToken) this.uploadTokens.delete(aj.job.uploadToken);
    for (const s of aj.job.shards) this.staged.delete(`${aj.job.id}/${s.index}`);
    return aj;
  }

  /** A shard of the job was accepted: it is done and no longer in flight. */
  doneShard(aj: ActiveJob, key: VariantKey): void {
    aj.done.add(key.index);
    this.inFlight.delete(variantKeyString(key));
  }

  /**
   * Takes a job off the ledger and puts its unfinished shards back: those
   * `isReady` says were accepted meanwhile are skipped, and when `counts`
   * (the work failed, not the encoder's connection) each shard's attempt
   * counts, up to `maxAttempts`. Undefined when the job is unknown.
   */
  requeue(jobId: string, counts: boolean, maxAttempts: number, isReady: (k: VariantKey) => boolean | undefined): Requeued | undefined {
    const aj = this.remove(jobId);
    if (!aj) return undefined;
    const out: Requeued = { aj, indices: [], failed: [] };
    if (aj.check) return out;
    for (const s of aj.job.shards) {
      if (aj.done.has(s.index)) continue;
      const k = { contentId: aj.job.contentId, rendition: aj.job.rendition, index: s.index };
      const key = variantKeyString(k);
      this.inFlight.delete(key);
      const ready = isReady(k);
      if (ready === undefined || ready) continue;
      const n = (this.attempts.get(key) ?? 0) + (counts ? 1 : 0);
      this.attempts.set(key, Math.max(n, this.attempts.get(key) ?? 0, 1));
      if (counts && n >= maxAttempts) out.failed.push({ key: k, attempts: n });
      else out.indices.push(s.index);
    }
    return out;
  }

  /** The job that an upload token names, or undefined. */
  byToken(token: string): ActiveJob | undefined {
    const id = this.uploadTokens.get(token);
    return id ? this.active.get(id) : undefined;
  }

  /** Keeps a checked upload until the shard-ready; ignored for a job no longer running. */
  stage(jobId: string, index: number, shard: StagedShard): boolean {
    if (!this.active.has(jobId)) return false;
    this.staged.set(`${jobId}/${index}`, shard);
    return true;
  }

  staging(jobId: string, index: number): StagedShard | undefined {
    return this.staged.get(`${jobId}/${index}`);
  }

  unstage(jobId: string, index: number): void {
    this.staged.delete(`${jobId}/${index}`);
  }

  isInFlight(key: string): boolean {
    return this.inFlight.has(key);
  }

  attemptsOf(key: string): number {
    return this.attempts.get(key) ?? 0;
  }

  forgetAttempts(key: string): void {
    this.attempts.delete(key);
  }

  /** Takes every job of a deleted content off the ledger (returned, for cancelling) and its variants off the in-flight list. */
  removeContent(contentId: string): ActiveJob[] {
    const gone: ActiveJob[] = [];
    for (const [jobId, aj] of [...this.active]) if (aj.job.contentId === contentId) gone.push(this.remove(jobId)!);
    const prefix = `${contentId}/`;
    for (const key of [...this.inFlight.keys()]) if (key.startsWith(prefix)) this.inFlight.delete(key);
    return gone;
  }
}
