/**
 * Adaptive trust for cross-checking encoders, after BOINC's adaptive
 * replication. An encoder's shards are accepted once the server has checked
 * their structure and hash, but a structurally valid shard can still hold the
 * wrong pictures. So a sample of each encoder's jobs is encoded again by a
 * second encoder of the same engine and build, and the hashes are compared
 * (ffmpeg.wasm's single-thread core is deterministic: tests/e2e/determinism.test.ts).
 *
 * How often an encoder is checked:
 * - its first `verifyNewEncoderJobs` jobs, all of them (and again after any failure);
 * - after that, with probability max(verifySampleRate, 1 / (1 + verifyTrustGrowth · n)),
 *   where n is the number of checks passed since then: the rate falls as trust grows.
 *
 * - an encoder suspected of passing one shard's bytes off as another's (the
 *   same bytes accepted under two keys): its next job, whatever its trust.
 *
 * A fresh identity starts with no record, so an encoder that reconnects without
 * its resume secret (to leave a quarantine behind, say) is back on probation:
 * every one of its first jobs is checked again.
 *
 * The module is pure bookkeeping: which jobs to check, which accepted shards of
 * each encoder are not yet verified, and counters. PoolManager runs the checks.
 */
export interface TrustConfig {
  verifySampleRate: number;
  verifyNewEncoderJobs: number;
  verifyTrustGrowth: number;
}

/** Suspected encoders remembered at most. */
const MAX_SUSPECTS = 10_000;

export interface TrustRecord {
  /** Checks passed since the encoder joined or last failed one. */
  passedInARow: number;
  passed: number;
  failed: number;
}

export class Trust {
  private readonly records = new Map<string, TrustRecord>();
  /** encoder -> accepted shard variant keys of its that no check has covered yet. */
  private readonly unverified = new Map<string, Set<string>>();
  /** Encoders whose next job is checked whatever their trust. */
  private readonly suspects = new Set<string>();
  readonly counters = {
    /** Jobs chosen for a cross-check. */
    checksPlanned: 0,
    /** Shards whose hash matched a second encoder's. */
    shardsVerified: 0,
    /** Shards where the second encoder differed (a third encode decides). */
    mismatches: 0,
    /** Encoders found in the wrong by a deciding encode. */
    convicted: 0,
    /** Mismatches no third encode settled (all three differ). */
    inconclusive: 0,
    /** Shards left unverified: no encoder of the same engine and build could check them. */
    unverifiable: 0,
    /** Shards taken back (not served, re-encoded) because their encoder was convicted before they were checked. */
    revoked: 0,
  };

  constructor(
    private readonly config: TrustConfig,
    private readonly random: () => number = Math.random,
  ) {}

  get(peerId: string): TrustRecord {
    let r = this.records.get(peerId);
    if (!r) this.records.set(peerId, (r = { passedInARow: 0, passed: 0, failed: 0 }));
    return r;
  }

  /** The probability that this encoder's next job is cross-checked. */
  rate(peerId: string): number {
    if (this.config.verifySampleRate <= 0 && this.config.verifyNewEncoderJobs <= 0) return 0;
    const r = this.get(peerId);
    if (r.passedInARow < this.config.verifyNewEncoderJobs) return 1;
    const n = r.passedInARow - this.config.verifyNewEncoderJobs + 1;
    return Math.min(1, Math.max(this.config.verifySampleRate, 1 / (1 + this.config.verifyTrustGrowth * n)));
  }

  /** Decides, once per finished job, whether it is cross-checked. */
  shouldCheck(peerId: string): boolean {
    const yes = this.suspects.delete(peerId) || this.random() < this.rate(peerId);
    if (yes) this.counters.checksPlanned++;
    return yes;
  }

  /** Something this encoder did calls for a check of its next job, whatever its trust. */
  suspect(peerId: string): void {
    this.suspects.add(peerId);
    // Identities are cheap: the oldest suspicion goes first rather than the set growing without bound.
    if (this.suspects.size > MAX_SUSPECTS) this.suspects.delete(this.suspects.values().next().value!);
  }

  /** Whether this encoder's accepted variant of `key` is still waiting to be verified. */
  isUnverified(peerId: string, key: string): boolean {
    return this.unverified.get(peerId)?.has(key) ?? false;
  }

  /** A shard variant of this encoder's was accepted and is not verified yet. */
  accepted(peerId: string, key: string): void {
    let set = this.unverified.get(peerId);
    if (!set) this.unverified.set(peerId, (set = new Set()));
    set.add(key);
  }

  /** A second encoder produced the same bytes. */
  verified(peerId: string, key: string): void {
    this.unverified.get(peerId)?.delete(key);
    this.counters.shardsVerified++;
  }

  /** The shard was settled otherwise (its variant replaced): nothing left to verify or revoke. */
  settle(peerId: string, key: string): void {
    this.unverified.get(peerId)?.delete(key);
  }

  /** A check of this encoder's job passed. */
  passed(peerId: string): void {
    const r = this.get(peerId);
    r.passed++;
    r.passedInARow++;
  }

  /** This encoder was found in the wrong: back to checking every job. Returns its unverified shards, which the pool takes back. */
  failed(peerId: string): string[] {
    const r = this.get(peerId);
    r.failed++;
    r.passedInARow = 0;
    this.counters.convicted++;
    const keys = [...(this.unverified.get(peerId) ?? [])];
    this.unverified.delete(peerId);
    this.counters.revoked += keys.length;
    return keys;
  }

  unverifiedCount(peerId: string): number {
    return this.unverified.get(peerId)?.size ?? 0;
  }

  /** A content was deleted: its shards need no checking any more. */
  forgetPrefix(prefix: string): void {
    for (const set of this.unverified.values()) for (const k of [...set]) if (k.startsWith(prefix)) set.delete(k);
  }
}
