/**
 * Encoder health: how fast and how reliable each encoder has been, and
 * whether it is in quarantine. Kept by peer id and outliving a disconnect for
 * the quarantine's length, so leaving and rejoining does not wash a record.
 *
 * score = speed × reliability, where
 * - speed: seconds of content encoded per second of wall time (a moving
 *   average over finished jobs; the tab's join benchmark until the first one);
 * - reliability: (1 + ok) / (1 + ok + 2·failed + 2·timedOut + 4·invalid),
 *   so a new encoder starts at 1 and every failure weighs against it.
 */
export interface HealthConfig {
  quarantineAfterFailures: number;
  quarantineAfterInvalid: number;
  quarantineMs: number;
}

export interface HealthRecord {
  speed: number;
  ok: number;
  failed: number;
  timedOut: number;
  invalid: number;
  /** Failures since the last success. */
  streak: number;
  quarantinedUntil: number;
  quarantineReason?: string;
  lastSeen: number;
}

const SPEED_SMOOTHING = 0.3;

export class Health {
  private readonly records = new Map<string, HealthRecord>();

  constructor(
    private readonly config: HealthConfig,
    private readonly now: () => number,
  ) {}

  get(peerId: string): HealthRecord {
    let r = this.records.get(peerId);
    if (!r) this.records.set(peerId, (r = { speed: 1, ok: 0, failed: 0, timedOut: 0, invalid: 0, streak: 0, quarantinedUntil: 0, lastSeen: this.now() }));
    r.lastSeen = this.now();
    return r;
  }

  /** The join benchmark's speed (x real time), used until jobs measure it. */
  benchmark(peerId: string, speed: number | undefined): void {
    const r = this.get(peerId);
    if (speed !== undefined && r.ok === 0) r.speed = Math.max(0.01, speed);
  }

  jobDone(peerId: string, contentSeconds: number, wallMs: number): void {
    const r = this.get(peerId);
    const speed = contentSeconds / Math.max(0.001, wallMs / 1000);
    r.speed = r.ok === 0 ? speed : (1 - SPEED_SMOOTHING) * r.speed + SPEED_SMOOTHING * speed;
    r.ok++;
    r.streak = 0;
  }

  /** A failed or timed-out job. Returns a quarantine reason when this one starts a quarantine. */
  jobFailed(peerId: string, kind: 'failed' | 'timeout'): string | undefined {
    const r = this.get(peerId);
    if (kind === 'failed') r.failed++;
    else r.timedOut++;
    r.streak++;
    if (r.streak >= this.config.quarantineAfterFailures) return this.quarantine(r, `${r.streak} jobs in a row failed or timed out`);
    return undefined;
  }

  /** A shard from this encoder was refused as invalid, or reported bad by a viewer. */
  invalidShard(peerId: string): string | undefined {
    const r = this.get(peerId);
    r.invalid++;
    if (r.invalid >= this.config.quarantineAfterInvalid) return this.quarantine(r, `${r.invalid} invalid shards`);
    return undefined;
  }

  /**
   * A failure held against this encoder turned out to be the job's fault (another encoder failed the same variant
   * the same way): it is taken back. A quarantine it started runs on (it is short, and sending jobs back and forth
   * to undo it would cost more).
   */
  forgive(peerId: string, kind: 'failed' | 'invalid'): void {
    const r = this.get(peerId);
    if (kind === 'invalid') r.invalid = Math.max(0, r.invalid - 1);
    else {
      r.failed = Math.max(0, r.failed - 1);
      r.streak = Math.max(0, r.streak - 1);
    }
  }

  /** Two other encoders agreed on different bytes for this encoder's shards: quarantine at once, whatever the counts. */
  crossCheckFailed(peerId: string, shards: number): string | undefined {
    const r = this.get(peerId);
    r.invalid += shards;
    return this.quarantine(r, `cross-check failed: ${shards} shard(s) differ from what two other encoders made`);
  }

  private quarantine(r: HealthRecord, reason: string): string | undefined {
    const already = this.quarantined(r);
    r.quarantinedUntil = this.now() + this.config.quarantineMs;
    r.quarantineReason = reason;
    // A quarantine served in full gives a clean streak, not a clean record.
    r.streak = 0;
    return already ? undefined : reason;
  }

  private quarantined(r: HealthRecord): boolean {
    return r.quarantinedUntil > this.now();
  }

  isQuarantined(peerId: string): boolean {
    const r = this.records.get(peerId);
    return r !== undefined && this.quarantined(r);
  }

  score(peerId: string): number {
    const r = this.get(peerId);
    const reliability = (1 + r.ok) / (1 + r.ok + 2 * r.failed + 2 * r.timedOut + 4 * r.invalid);
    return r.speed * reliability;
  }

  /** Forgets records of peers gone for longer than a quarantine. */
  prune(connected: (peerId: string) => boolean): void {
    const cutoff = this.now() - this.config.quarantineMs;
    for (const [id, r] of this.records) if (!connected(id) && r.lastSeen < cutoff && !this.quarantined(r)) this.records.delete(id);
  }
}
