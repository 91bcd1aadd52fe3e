/**
 * Owns the pool's counters and its recent-events log, both derived from the
 * events the pool emits (one subscriber, so a counter cannot drift from the
 * events it counts). Feeds /api/pool and /metrics.
 */
import type { TypedEmitter } from '../../src/shared/events.ts';
import type { PoolEventRecord, PoolEvents } from './types.ts';

export interface PoolCounters {
  jobsAssigned: number;
  jobsCompleted: number;
  requeues: number;
  shardsAccepted: number;
  shardsRejected: number;
  locates: number;
  badMessages: number;
  replications: number;
  releases: number;
  quarantines: number;
  preemptions: number;
  orphans: number;
  /** Uploaded shards checked (structure, hash), the time that took (ms) and their bytes. */
  intakeChecks: number;
  intakeCheckMs: number;
  intakeBytes: number;
  intakeRefused: number;
  /** Reports about holders that counted (signaling/pool/Reports.ts). */
  peerReports: number;
}

/** Events kept in the recent log (for /api/pool and the /pool page), in the order they are listed there. */
export const LOGGED_EVENTS = [
  'peer-joined',
  'peer-lost',
  'job-assigned',
  'job-requeued',
  'shard-rejected',
  'shard-failed',
  'content-complete',
  'encoder-quarantined',
  'replicate',
  'replica-stored',
  'replica-released',
  'shard-orphaned',
  'job-preempted',
  'shard-revoked',
  'check-planned',
  'check-passed',
  'encoder-convicted',
  'verify-fail',
  'verify-passed',
  'verify-convicted',
  'verify-cleared',
  'peer-reported',
] as const satisfies readonly (keyof PoolEvents)[];

/** How many recent events are kept. */
export const RECENT_EVENTS = 200;

/**
 * Event types kept in the recent log at most this many times (the oldest of
 * the type goes first): anonymous peers cause them, and many peers must not
 * push the pool's own events out of the log.
 */
export const RECENT_CAPS: Partial<Record<keyof PoolEvents, number>> = { 'peer-reported': 10 };

type Counting = { [K in keyof PoolEvents]?: (c: PoolCounters, e: PoolEvents[K]) => void };

/** Which event moves which counter. */
const COUNTING: Counting = {
  'job-assigned': (c) => c.jobsAssigned++,
  'job-done': (c) => c.jobsCompleted++,
  'job-requeued': (c) => c.requeues++,
  'check-requeued': (c) => c.requeues++,
  // A variant that replaced another after a cross-check was not a fresh encode.
  'shard-accepted': (c, e) => void (e.replaced || c.shardsAccepted++),
  'shard-rejected': (c) => c.shardsRejected++,
  'peer-reported': (c) => c.peerReports++,
  located: (c) => c.locates++,
  'bad-message': (c) => c.badMessages++,
  replicate: (c) => c.replications++,
  'replica-released': (c) => c.releases++,
  'encoder-quarantined': (c) => c.quarantines++,
  'job-preempted': (c) => c.preemptions++,
  'shard-orphaned': (c) => c.orphans++,
  'shard-staged': (c, e) => {
    c.intakeChecks++;
    c.intakeCheckMs += e.checkMs;
    c.intakeBytes += e.size;
  },
  'upload-refused': (c) => c.intakeRefused++,
};

export class Stats {
  /** Live counters; read-only to everyone but this class (the server's own bad-message count writes here too, for now). */
  readonly counters: PoolCounters = {
    jobsAssigned: 0,
    jobsCompleted: 0,
    requeues: 0,
    shardsAccepted: 0,
    shardsRejected: 0,
    locates: 0,
    badMessages: 0,
    replications: 0,
    releases: 0,
    quarantines: 0,
    preemptions: 0,
    orphans: 0,
    intakeChecks: 0,
    intakeCheckMs: 0,
    intakeBytes: 0,
    intakeRefused: 0,
    peerReports: 0,
  };
  /**
   * The last `n` logged events of uncapped types, with the capped ones (RECENT_CAPS) of that span
   * besides, oldest first: what /api/pool shows, so capped events never take the pool's own out of view.
   */
  window(n: number): PoolEventRecord[] {
    const own = this.recent.filter((e) => RECENT_CAPS[e.type] === undefined).slice(-n);
    const since = own[0]?.at ?? -Infinity;
    const capped = new Set(this.recent.filter((e) => RECENT_CAPS[e.type] !== undefined && e.at >= since));
    const keep = new Set(own);
    return this.recent.filter((e) => keep.has(e) || capped.has(e));
  }

  /** The last RECENT_EVENTS logged events, oldest first; `at` in ms of the pool's clock. */
  readonly recent: PoolEventRecord[] = [];

  constructor(events: TypedEmitter<PoolEvents>, now: () => number) {
    for (const type of Object.keys(COUNTING) as (keyof PoolEvents)[]) {
      const count = COUNTING[type] as (c: PoolCounters, e: unknown) => void;
      events.on(type, (e) => count(this.counters, e));
    }
    for (const type of LOGGED_EVENTS) {
      const cap = RECENT_CAPS[type];
      events.on(type, (detail) => {
        if (cap !== undefined && this.recent.filter((r) => r.type === type).length >= cap) {
          this.recent.splice(
            this.recent.findIndex((r) => r.type === type),
            1,
          );
        }
        this.recent.push({ at: now(), type, detail });
        if (this.recent.length > RECENT_EVENTS) this.recent.splice(0, this.recent.length - RECENT_EVENTS);
      });
    }
  }
}
