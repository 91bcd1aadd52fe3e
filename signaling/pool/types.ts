/**
 * The pool's shared vocabulary: the records its modules pass around, the
 * events it emits, the outbox every module sends through; a handler throws
 * the shared ProtocolError to answer a peer with an `error` message.
 */
import type { Capabilities, Job, ServerMessage, VerifyMeasure } from '../../src/shared/protocol.ts';
import type { VariantKey } from '../../src/shared/variantKey.ts';

export type Role = 'encoder' | 'viewer';

export interface PeerConnection {
  send(msg: ServerMessage): void;
  close(code: number, reason: string): void;
}

export interface Peer {
  readonly id: string;
  readonly role: Role;
  readonly conn: PeerConnection;
  capabilities?: Capabilities;
  readonly joinedAt: number;
  lastSeen: number;
  /** Ids of the peer's running jobs: a read-only view of the job ledger. */
  readonly jobs: ReadonlySet<string>;
  /** Variant key strings the peer holds: a read-only view of the availability index. */
  readonly holdings: ReadonlySet<string>;
  completedJobs: number;
  failedJobs: number;
  shardsEncoded: number;
  activeJobsReported: number;
  heldBytes: number;
  /** Transfers the peer is serving now (heartbeat). */
  serving: number;
}

/** Why a job was given out: live (near a viewer's playhead), start (of a content), or background (pre-encoding). */
export type JobClass = 'live' | 'start' | 'background';

export interface ActiveJob {
  job: Job;
  peerId: string;
  assignedAt: number;
  done: Set<number>;
  progress: number;
  klass: JobClass;
  /** Set when the job re-encodes accepted shards to cross-check another encoder. */
  check?: CrossCheck;
  /** Cross-check jobs: what this encoder reported per shard index. */
  results?: Map<number, Reported>;
}

/** A shard's bytes, checked by the server (structure, hash, size) after an upload with the job's token. */
export interface StagedShard {
  sha256: string;
  size: number;
  lead?: number;
  tail?: number;
  /** Kept only when the cache is on: they go there on acceptance. */
  bytes?: Uint8Array;
}

export interface Reported extends StagedShard {
  engine?: string;
}

/**
 * A re-encode of shards another encoder made. Stage 'verify': a second encoder
 * of the same engine encodes them; stage 'decide': a third settles the shards
 * where the first two differ.
 */
export interface CrossCheck {
  stage: 'verify' | 'decide';
  contentId: string;
  rendition: string;
  indices: number[];
  /** Engine and build of the checked encodes; hashes are only compared between equal engine strings. */
  engine: string;
  /** The encoder whose accepted shards are checked. */
  origin: string;
  /** The accepted hashes when the check was planned, by index. */
  expected: Map<number, string>;
  /** Stage 'decide': the second encoder and what it reported. */
  verifier?: string;
  verifierResults?: Map<number, Reported>;
  /**
   * Stage 'decide': the indices where the first two differ, the only ones judged. The
   * decider encodes the whole run (`indices`): x264's rate control carries state from
   * shard to shard, so a shard encoded in another run is other bytes.
   */
  disputed?: number[];
  /** Encoders that may not do this check. */
  exclude: Set<string>;
}

export interface PoolEvents {
  'peer-joined': { peerId: string; role: Role };
  'peer-lost': { peerId: string; role: Role; reason: string; requeued: number };
  'job-assigned': { jobId: string; peerId: string; key: string; shards: number; klass: JobClass };
  'job-requeued': { jobId: string; peerId: string; indices: number[]; rendition: string; contentId: string; reason: string };
  'job-done': { jobId: string; peerId: string };
  /** `replaced`: the variant replaced another after a cross-check (not a fresh encode). */
  'shard-accepted': { key: VariantKey; peerId: string; sha256: string; bytes?: Uint8Array; replaced?: true };
  /** An accepted variant is taken back (its encoder was caught); any cached copy must go. */
  'shard-revoked': { key: VariantKey; peerId: string; reason: string };
  'check-planned': { stage: 'verify' | 'decide'; origin: string; key: string; shards: number };
  'check-passed': { origin: string; verifier: string; key: string; shards: number };
  'encoder-convicted': { peerId: string; wrong: number; revoked: number };
  'shard-rejected': { key: VariantKey; peerId: string; reason: string };
  /** A peer's report that `peerId` served it bad bytes, counted (signaling/pool/Reports.ts); `recheck`: the server has the shard encoded again. */
  'peer-reported': { key: VariantKey; peerId: string; reporter: string; reason: string; recheck: boolean };
  /** `reason`: why it was given up (out of attempts, or the same failure on several encoders). */
  'shard-failed': { key: VariantKey; attempts: number; reason: string };
  'content-complete': { contentId: string };
  'encoder-quarantined': { peerId: string; reason: string; until: number };
  replicate: { key: string; peerId: string; from: number; cached: boolean; reason: string };
  'replica-stored': { key: string; peerId: string };
  'replica-released': { key: string; peerId: string };
  'shard-orphaned': { key: string; action: 're-encode' | 'from-cache' };
  'job-preempted': { jobId: string; peerId: string; for: string };
  /** Picture verification (signaling/pool/Verification.ts): a task queued for a stage, a shard a verifier failed, and the task's ends. */
  'verify-planned': { id: string; stage: 'first' | 'confirm' | 'decide'; origin: string; key: string; shards: number };
  /** A verifier's figures, as sent (not logged: for benchmarks and observers). */
  'verify-measured': { id: string; stage: 'first' | 'confirm' | 'decide'; origin: string; verifier: string; engine: string; measures: VerifyMeasure[] };
  'verify-fail': { id: string; verifier: string; origin: string; key: string; reason: string };
  'verify-passed': { id: string; origin: string; verifier: string; shards: number };
  'verify-convicted': { id: string; origin: string; verifiers: string[]; shards: number };
  /** A third verifier overturned `falseAlarm`'s fail. */
  'verify-cleared': { id: string; origin: string; falseAlarm: string };
  /** An assignment given back (timeout, verifier gone, could not run). */
  'verify-retry': { id: string; verifier: string; reason: string };
  /** A cross-check job went back to the check queue (its encoder left, failed or was preempted). */
  'check-requeued': { jobId: string; peerId: string };
  /** A viewer or encoder asked who holds a window of shards. */
  located: { peerId: string; contentId: string };
  /** A peer sent a message the protocol refuses (answered with `error`); no `peerId` before its hello. */
  'bad-message': { peerId?: string; code: string };
  /** An upload's bytes passed the intake check; `checkMs` is the time that took. */
  'shard-staged': { jobId: string; index: number; size: number; checkMs: number };
  /** An upload failed the intake's structure check. */
  'upload-refused': { jobId: string; key: VariantKey; reason: string };
}

export interface PoolEventRecord {
  at: number;
  type: keyof PoolEvents;
  detail: unknown;
}

/**
 * Where pool modules send: to one connected peer (dropped when it is gone)
 * and to the outside as events. Modules never hold sockets or emitters.
 */
export interface Outbox {
  send(peerId: string, msg: ServerMessage): void;
  emit<K extends keyof PoolEvents>(type: K, detail: PoolEvents[K]): void;
}

/** A refused message: `code` goes back to the peer in an `error` message (the shared error vocabulary). */
export { ProtocolError } from '../../src/shared/errors.ts';
