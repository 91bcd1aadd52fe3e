/**
 * Owns viewers' reports about holders (`report-peer`): which reports counted,
 * each reporter's budget, and the holders each reporter has reported, which
 * its own `holders` answers put last. A report never convicts: the server
 * cannot see the bytes two peers exchange, and a viewer is anonymous, so one
 * viewer (or a hundred, opened by one attacker) must not be able to take an
 * honest encoder out of the pool. What the server can verify, it verifies
 * itself (the pool re-checks an accepted shard no check has covered yet);
 * this module only decides whether a report counts and remembers its effect
 * on the reporter.
 */

export interface ReportsConfig {
  /** Reports one reporter may have counted per minute (token bucket of this size, refilled over a minute). */
  reportsPerMinute: number;
}

/** Holders one reporter keeps demoted at most (oldest forgotten first): its window of shards is far smaller. */
export const MAX_DEMOTIONS_PER_REPORTER = 1024;

interface ReporterState {
  tokens: number;
  /** ms of the pool's clock when `tokens` was last refilled. */
  at: number;
  /** "variantKey peerId" of every counted report, oldest first. */
  demoted: Set<string>;
}

/** Why a report did not count. */
export type ReportVerdict = 'counted' | 'duplicate' | 'over-budget';

export class Reports {
  private readonly reporters = new Map<string, ReporterState>();

  constructor(
    private readonly config: ReportsConfig,
    private readonly now: () => number,
  ) {}

  /**
   * A report by `reporter` that `peerId` served bad bytes for `key` (a variant
   * key string). Counted at most once per reporter, key and peer, and within
   * the reporter's budget; a counted report demotes the peer in the
   * reporter's own holder order for that key.
   */
  consider(reporter: string, key: string, peerId: string): ReportVerdict {
    const r = this.state(reporter);
    const entry = `${key} ${peerId}`;
    if (r.demoted.has(entry)) return 'duplicate';
    const perMs = this.config.reportsPerMinute / 60_000;
    const t = this.now();
    r.tokens = Math.min(this.config.reportsPerMinute, r.tokens + (t - r.at) * perMs);
    r.at = t;
    if (r.tokens < 1) return 'over-budget';
    r.tokens--;
    r.demoted.add(entry);
    if (r.demoted.size > MAX_DEMOTIONS_PER_REPORTER) r.demoted.delete(r.demoted.values().next().value!);
    return 'counted';
  }

  /** Whether `reporter` has reported `peerId` for `key`: its holder lists put that peer last. */
  demoted(reporter: string, key: string, peerId: string): boolean {
    return this.reporters.get(reporter)?.demoted.has(`${key} ${peerId}`) ?? false;
  }

  /** The reporter left: its demotions and budget go with it (a new connection starts a new budget, bounded per address by the connection limits). */
  forget(reporter: string): void {
    this.reporters.delete(reporter);
  }

  private state(reporter: string): ReporterState {
    let r = this.reporters.get(reporter);
    if (!r) this.reporters.set(reporter, (r = { tokens: this.config.reportsPerMinute, at: this.now(), demoted: new Set() }));
    return r;
  }
}
