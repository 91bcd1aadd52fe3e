/**
 * Owns the picture verifications ("verify" jobs) and their policy: shards of
 * an engine whose output differs run to run (WebCodecs) cannot be checked by
 * hash, so another volunteer decodes them and the same source slice and
 * reports PSNR, frame count and frame times (after Livepeer's fast
 * verification); this module judges those measurements.
 *
 * A task's states: queued -> assigned -> passed | convicted | cleared |
 * unverifiable, through stages:
 * - first: one verifier. All shards pass: passed. Some fail: those go to
 * - confirm: a second verifier (never the first, never the encoder). It fails
 *   one of them too: convicted (the encoder, as a lost hash cross-check would).
 *   It passes all of them: one word against another, so
 * - decide: a third verifier. A fail: convicted. A pass: cleared, and the
 *   first verifier's false alarm counts against it as an invalid result.
 * A verifier that times out, leaves or cannot run it sends the task back
 * (excluded from it); after `verifyMaxAttempts` the task's shards are counted
 * unverifiable. A verifier's result is never taken alone against an encoder.
 */
import type { Job, JobShard, VerifyMeasure } from '../../src/shared/protocol.ts';
import { variantKeyString, type VariantKey } from '../../src/shared/variantKey.ts';
import type { ContentStore } from '../ContentStore.ts';
import type { Health } from '../policy/Health.ts';
import type { Trust } from '../policy/Trust.ts';
import { ProtocolError, type Outbox, type Peer } from './types.ts';

export interface VerificationConfig {
  /** Engine names (before "@") whose shards are verified by picture, comma-separated. */
  verifyPictureEngines: string;
  /** Mean luma PSNR (dB) below which a shard fails. */
  verifyMinPsnrDb: number;
  /** Largest frame time error (s) a shard may have against its source. */
  verifyMaxTimeErrorSeconds: number;
  /** How long a verifier has for one task, ms. */
  verifyTimeoutMs: number;
  /** Verifiers tried per stage before the shards are counted unverifiable. */
  verifyMaxAttempts: number;
  /** Tasks waiting at most; the newest beyond are dropped (counted unverifiable). */
  verifyQueueMax: number;
}

export type VerifyStage = 'first' | 'confirm' | 'decide';
export type VerifyState = 'queued' | 'assigned' | 'passed' | 'convicted' | 'cleared' | 'unverifiable';

export interface VerifyTask {
  readonly id: string;
  readonly contentId: string;
  readonly rendition: string;
  /** Shards still in question, by index. */
  indices: number[];
  /** The accepted hashes when the task was planned: a shard replaced meanwhile is not judged. */
  readonly expected: Map<number, string>;
  readonly engine: string;
  /** The encoder whose shards are verified. */
  readonly origin: string;
  stage: VerifyStage;
  state: VerifyState;
  verifier?: string;
  /** Epoch ms by which the assigned verifier must answer. */
  deadline?: number;
  /** Who failed the shards in question (first stage), and who passed them (confirm stage). */
  accuser?: string;
  defender?: string;
  /** Verifiers who may not take it (the encoder, earlier verifiers, those who failed to answer). */
  readonly exclude: Set<string>;
  /** Verifiers tried in the current stage. */
  attempts: number;
}

/** The verdict on one shard's measurement, with the reason when it fails. */
export function judge(
  m: VerifyMeasure,
  shard: Pick<JobShard, 'frames'>,
  c: Pick<VerificationConfig, 'verifyMinPsnrDb' | 'verifyMaxTimeErrorSeconds'>,
): string | undefined {
  if (m.frames !== shard.frames) return `${m.frames} frames decoded, ${shard.frames} expected`;
  if (m.maxTimeError > c.verifyMaxTimeErrorSeconds) return `frame times off by up to ${(m.maxTimeError * 1000).toFixed(1)} ms`;
  if (m.psnr < c.verifyMinPsnrDb) return `PSNR ${m.psnr.toFixed(1)} dB against the source, below ${c.verifyMinPsnrDb} dB`;
  return undefined;
}

/** What a verifier's verdict does to its task (pure: the caller carries it out). */
export type Outcome =
  | { kind: 'passed'; verified: number[] }
  | { kind: 'next-stage'; stage: VerifyStage; verified: number[] }
  | { kind: 'convicted'; wrong: number[] }
  | { kind: 'cleared'; falseAlarm: string };

/**
 * The state machine's one transition on a verdict: `failed` are the indices
 * (of those in question) the verifier found wrong. Mutates `t` (state, stage,
 * indices, who said what) and returns what the pool must do.
 */
export function advance(t: VerifyTask, verifier: string, failed: readonly number[]): Outcome {
  t.exclude.add(verifier);
  t.verifier = undefined;
  t.deadline = undefined;
  t.attempts = 0;
  const bad = t.indices.filter((i) => failed.includes(i));
  if (t.stage === 'first') {
    if (bad.length === 0) {
      t.state = 'passed';
      return { kind: 'passed', verified: t.indices };
    }
    const verified = t.indices.filter((i) => !bad.includes(i));
    Object.assign(t, { stage: 'confirm', state: 'queued', indices: bad, accuser: verifier });
    return { kind: 'next-stage', stage: 'confirm', verified };
  }
  if (bad.length > 0) {
    t.state = 'convicted';
    return { kind: 'convicted', wrong: bad };
  }
  if (t.stage === 'confirm') {
    Object.assign(t, { stage: 'decide', state: 'queued', defender: verifier });
    return { kind: 'next-stage', stage: 'decide', verified: [] };
  }
  t.state = 'cleared';
  return { kind: 'cleared', falseAlarm: t.accuser! };
}

/** What the pool does for verifications that is not theirs to own. */
export interface VerificationHost {
  /** Convicts an encoder as a failed cross-check does (quarantine, its unverified shards revoked). */
  convict(peerId: string, wrong: number): void;
  /** A verifier's false alarm, counted like an invalid shard. */
  invalid(peerId: string): void;
  /** A verifier let its deadline pass, counted like a timed-out job. */
  timedOut(peerId: string): void;
  /** The job the shards were made for (no upload token). */
  jobFor(contentId: string, rendition: string, indices: number[]): Job | undefined;
  /** Where a verifier can fetch a shard: holders other than `except`, and whether the cache has it. */
  sources(key: VariantKey, except: string): { from: string[]; cached: boolean };
  /** Whether the peer holds the variant (a holder's own copy proves nothing about the encoder's). */
  holds(peerId: string, key: string): boolean;
  scheduleSoon(): void;
}

export class Verification {
  /** Waiting tasks, oldest first ('confirm' and 'decide' go first). */
  readonly queue: VerifyTask[] = [];
  /** Assigned tasks by id. */
  private readonly running = new Map<string, VerifyTask>();
  private seq = 0;
  readonly counters = {
    /** Tasks planned. */
    planned: 0,
    /** Shards a first verifier passed. */
    shardsPassed: 0,
    /** Shards a verifier failed (false alarms included). */
    shardFails: 0,
    /** Encoders convicted by two verifiers' fails. */
    convicted: 0,
    /** Accusations a third verifier overturned. */
    cleared: 0,
    /** Shards no verifier settled in time. */
    unverifiable: 0,
    /** Assignments given back (timeout, verifier gone, could not run). */
    retries: 0,
  };

  constructor(
    private readonly store: ContentStore,
    private readonly trust: Trust,
    private readonly health: Health,
    private readonly outbox: Outbox,
    private readonly host: VerificationHost,
    private readonly config: VerificationConfig,
    private readonly now: () => number,
  ) {}

  /** Whether shards of this engine string are verified by picture here. */
  covers(engine: string | undefined): boolean {
    const name = engine?.split('@')[0];
    return name !== undefined && this.config.verifyPictureEngines.split(',').some((e) => e.trim() === name);
  }

  /**
   * After an encoder's video job: when its shards came from a covered engine,
   * maybe (Trust's sampling) plan a verification. True when the job is this
   * module's (its shards are not for hash cross-checks), sampled or not.
   */
  afterJob(origin: string, contentId: string, rendition: string, indices: readonly number[]): boolean {
    const content = this.store.get(contentId);
    const expected = new Map<number, string>();
    let engine: string | undefined;
    for (const i of indices) {
      const st = content?.map.shards[i]?.renditions[rendition];
      if (st?.status !== 'ready' || !st.sha256) continue;
      engine ??= st.engine;
      expected.set(i, st.sha256);
    }
    if (expected.size === 0 || !this.covers(engine)) return false;
    if (!this.trust.shouldCheck(origin)) return true;
    this.counters.planned++;
    const t: VerifyTask = {
      id: `v${(++this.seq).toString(36)}${Math.random().toString(36).slice(2, 8)}`,
      contentId,
      rendition,
      indices: [...expected.keys()],
      expected,
      engine: engine!,
      origin,
      stage: 'first',
      state: 'queued',
      exclude: new Set([origin]),
      attempts: 0,
    };
    this.enqueue(t);
    return true;
  }

  private enqueue(t: VerifyTask): void {
    t.state = 'queued';
    if (t.stage === 'first') this.queue.push(t);
    else this.queue.unshift(t);
    while (this.queue.length > this.config.verifyQueueMax) this.counters.unverifiable += this.queue.pop()!.indices.length;
    this.outbox.emit('verify-planned', {
      id: t.id,
      stage: t.stage,
      origin: t.origin,
      key: `${t.contentId}/${t.rendition}/${t.indices[0]}`,
      shards: t.indices.length,
    });
    this.host.scheduleSoon();
  }

  /** Verify tasks a peer runs now (they take its job slots). */
  busy(peerId: string): number {
    let n = 0;
    for (const t of this.running.values()) if (t.verifier === peerId) n++;
    return n;
  }

  /**
   * Gives waiting tasks to encoders with a free slot that are party to none
   * of them (ffmpeg.wasm decodes, so any encoder tab can). Decrements `free`.
   */
  take(slots: { peer: Peer; free: number }[]): void {
    for (let i = 0; i < this.queue.length; i++) {
      const t = this.queue[i]!;
      const content = this.store.get(t.contentId);
      t.indices = t.indices.filter((x) => content?.map.shards[x]?.renditions[t.rendition]?.sha256 === t.expected.get(x));
      if (t.indices.length === 0) {
        this.queue.splice(i--, 1);
        continue;
      }
      const keys = t.indices.map((index) => ({ contentId: t.contentId, rendition: t.rendition, index }));
      const slot = slots.find(
        ({ peer: p, free }) =>
          free > 0 &&
          !t.exclude.has(p.id) &&
          !this.health.isQuarantined(p.id) &&
          (p.capabilities?.engines.some((e) => e.name === 'ffmpeg-wasm') ?? false) &&
          !keys.some((k) => this.host.holds(p.id, variantKeyString(k))),
      );
      const job = slot && this.host.jobFor(t.contentId, t.rendition, t.indices);
      if (!slot || !job) continue;
      this.queue.splice(i--, 1);
      slot.free--;
      Object.assign(t, { state: 'assigned', verifier: slot.peer.id, deadline: this.now() + this.config.verifyTimeoutMs });
      t.attempts++;
      this.running.set(t.id, t);
      const shards = keys.map((k) => ({ index: k.index, sha256: t.expected.get(k.index)!, size: this.sizeOf(k), ...this.host.sources(k, slot.peer.id) }));
      this.outbox.send(slot.peer.id, { type: 'verify', verifyId: t.id, job, shards, deadline: t.deadline! });
    }
  }

  private sizeOf(k: VariantKey): number {
    return this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition]?.size ?? 1;
  }

  /** The peer's own running task by id; throws ProtocolError 'unknown-verify' otherwise. */
  private own(peerId: string, verifyId: string): VerifyTask {
    const t = this.running.get(verifyId);
    if (!t || t.verifier !== peerId) throw new ProtocolError('unknown-job', `verification ${verifyId} is not assigned to you (it may have timed out)`);
    return t;
  }

  /** A verifier's measurements: judged per shard, and the task advanced. Throws ProtocolError when they do not match the task. */
  result(peerId: string, verifyId: string, measures: readonly VerifyMeasure[]): void {
    const t = this.own(peerId, verifyId);
    const got = measures.map((m) => m.index);
    if (got.length !== t.indices.length || t.indices.some((i) => !got.includes(i))) {
      throw new ProtocolError('bad-message', `verify-result must measure exactly shards ${t.indices.join(',')}`);
    }
    const content = this.store.get(t.contentId);
    const failed: number[] = [];
    for (const m of measures) {
      const frames = content?.map.shards[m.index]?.frames ?? -1;
      const why = judge(m, { frames }, this.config);
      if (!why) continue;
      failed.push(m.index);
      this.counters.shardFails++;
      this.outbox.emit('verify-fail', { id: t.id, verifier: peerId, origin: t.origin, key: `${t.contentId}/${t.rendition}/${m.index}`, reason: why });
    }
    this.running.delete(t.id);
    this.outbox.emit('verify-measured', { id: t.id, stage: t.stage, origin: t.origin, verifier: peerId, engine: t.engine, measures: [...measures] });
    this.apply(t, peerId, advance(t, peerId, failed));
  }

  private apply(t: VerifyTask, verifier: string, o: Outcome): void {
    const keyOf = (index: number) => variantKeyString({ contentId: t.contentId, rendition: t.rendition, index });
    switch (o.kind) {
      case 'passed':
      case 'next-stage':
        for (const i of o.verified) this.trust.verified(t.origin, keyOf(i));
        this.counters.shardsPassed += o.verified.length;
        if (o.kind === 'passed') {
          this.trust.passed(t.origin);
          this.outbox.emit('verify-passed', { id: t.id, origin: t.origin, verifier, shards: o.verified.length });
        } else this.enqueue(t);
        return;
      case 'convicted':
        this.counters.convicted++;
        this.outbox.emit('verify-convicted', {
          id: t.id,
          origin: t.origin,
          verifiers: [t.accuser, verifier].filter((x): x is string => !!x),
          shards: o.wrong.length,
        });
        this.host.convict(t.origin, o.wrong.length);
        return;
      case 'cleared':
        this.counters.cleared++;
        for (const i of t.indices) this.trust.verified(t.origin, keyOf(i));
        this.outbox.emit('verify-cleared', { id: t.id, origin: t.origin, falseAlarm: o.falseAlarm });
        this.host.invalid(o.falseAlarm);
    }
  }

  /** The verifier could not run it, left, or ran out of time: the task goes back for someone else, or gives up. */
  giveBack(t: VerifyTask, reason: string): void {
    this.running.delete(t.id);
    if (t.verifier) t.exclude.add(t.verifier);
    this.counters.retries++;
    this.outbox.emit('verify-retry', { id: t.id, verifier: t.verifier ?? '', reason });
    t.verifier = undefined;
    t.deadline = undefined;
    if (t.attempts >= this.config.verifyMaxAttempts) {
      t.state = 'unverifiable';
      this.counters.unverifiable += t.indices.length;
      return;
    }
    this.enqueue(t);
  }

  /** `verify-failed` from the verifier. */
  failed(peerId: string, verifyId: string, reason: string): void {
    this.giveBack(this.own(peerId, verifyId), `could not verify: ${reason}`);
  }

  /** Tasks whose verifier is late (the deadline task). */
  expire(now: number): void {
    for (const t of [...this.running.values()]) {
      if ((t.deadline ?? Infinity) >= now) continue;
      const late = t.verifier;
      this.giveBack(t, 'deadline passed');
      if (late) this.host.timedOut(late);
    }
  }

  /** A peer left: its tasks go back; tasks about its shards stay (its shards stay accepted). */
  peerLeft(peerId: string): void {
    for (const t of [...this.running.values()]) if (t.verifier === peerId) this.giveBack(t, 'verifier left');
  }

  /** A content was deleted: its tasks go. */
  forgetContent(contentId: string): void {
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.contentId === contentId) this.queue.splice(i, 1);
    for (const [id, t] of this.running) if (t.contentId === contentId) this.running.delete(id);
  }

  get inProgress(): readonly VerifyTask[] {
    return [...this.running.values()];
  }
}
