/**
 * The pool's periodic work as named tasks, and the one ticker that runs them.
 * Each task owns its policy for one periodic concern; the ticker runs every
 * due task in order on each tick (their order matters: peers that went silent
 * are dropped before deadlines are read, and scheduling runs last).
 */

/** One periodic concern. `run(now)` gets the tick's time (ms) and may throw nothing. */
export interface PoolTask {
  readonly name: string;
  /** How often it runs (ms); a multiple of the ticker's period runs every n-th tick. */
  readonly periodMs: number;
  run(now: number): void;
}

/** Drops peers silent for longer than the heartbeat timeout, allowing for the ticker's own lateness. */
export class HeartbeatExpiry implements PoolTask {
  readonly name = 'heartbeat-expiry';
  private last = 0;

  constructor(
    readonly periodMs: number,
    private readonly timeoutMs: number,
    private readonly silentSince: (cutoff: number) => { id: string; close(): void }[],
  ) {}

  run(now: number): void {
    // When the server itself is behind (a long task), the tick runs late and messages wait unread:
    // allow for that lateness, or a busy server would drop healthy tabs and feed itself more work.
    const late = this.last ? Math.max(0, now - this.last - this.periodMs) : 0;
    this.last = now;
    for (const p of this.silentSince(now - this.timeoutMs - late)) p.close();
  }
}

/** Cancels and re-queues jobs whose deadline has passed (all found overdue at the tick, even if one's expiry re-queued another). */
export class JobDeadlines<J> implements PoolTask {
  readonly name = 'job-deadlines';

  constructor(
    readonly periodMs: number,
    private readonly overdue: (now: number) => J[],
    private readonly expire: (job: J) => void,
  ) {}

  run(now: number): void {
    for (const job of this.overdue(now)) this.expire(job);
  }
}

/** A task that calls one function each period (replication pass, health pruning, scheduling). */
export class Every implements PoolTask {
  constructor(
    readonly name: string,
    readonly periodMs: number,
    private readonly fn: (now: number) => void,
  ) {}

  run(now: number): void {
    this.fn(now);
  }
}

/** Runs `fn` once, at the first tick at or after `at` (epoch ms). */
export class Once implements PoolTask {
  private done = false;

  constructor(
    readonly name: string,
    readonly periodMs: number,
    private readonly at: number,
    private readonly fn: () => void,
  ) {}

  run(now: number): void {
    if (this.done || now < this.at) return;
    this.done = true;
    this.fn();
  }
}

/** Runs the tasks on one timer of `periodMs`. */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;

  constructor(
    readonly periodMs: number,
    private readonly tasks: readonly PoolTask[],
    private readonly now: () => number,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One tick: each task whose period has come runs, in order, each with the time read as it starts. */
  tick(): void {
    this.ticks++;
    for (const t of this.tasks) if (this.ticks % Math.max(1, Math.round(t.periodMs / this.periodMs)) === 0) t.run(this.now());
  }
}
