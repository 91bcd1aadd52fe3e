/**
 * Read-only views of the pool for /api/pool, the /pool heat map and
 * /metrics. Owns no state: everything is read from the modules that own it.
 */
import { variantKeyString, type VariantKey } from '../../src/shared/variantKey.ts';
import type { HolderEntry } from '../../src/shared/protocol.ts';
import type { Content, ContentStore } from '../ContentStore.ts';
import type { Demand } from '../policy/Demand.ts';
import type { Health } from '../policy/Health.ts';
import type { Trust } from '../policy/Trust.ts';
import type { AvailabilityIndex } from './AvailabilityIndex.ts';
import type { CrossChecks } from './CrossChecks.ts';
import type { JobLedger } from './JobLedger.ts';
import type { Reports } from './Reports.ts';
import type { Sessions } from './Sessions.ts';

/**
 * Holders named per shard in a `holders` answer, the least busy first: a viewer
 * fetches from one or two, so more only grows the answer (a popular shard can
 * have every viewer as a holder).
 */
export const MAX_LISTED_HOLDERS = 16;
import type { Stats } from './Stats.ts';
import type { JobClass, Peer } from './types.ts';

export interface ViewSources {
  store: ContentStore;
  sessions: Sessions;
  ledger: JobLedger;
  index: AvailabilityIndex;
  health: Health;
  trust: Trust;
  demand: Demand;
  stats: Stats;
  checks: CrossChecks;
  reports: Reports;
  isCached: (k: VariantKey) => boolean;
  now: () => number;
}

export class Views {
  constructor(private readonly s: ViewSources) {}

  /**
   * Per content, per rendition: one character per shard for its state
   * (r ready, e encoding, p pending, f failed, - none) and its live holder
   * count, for the /pool heat map.
   */
  heat() {
    const { store, index, isCached, demand } = this.s;
    return store.all().map((c) => ({
      id: c.meta.id,
      name: c.meta.name,
      shards: c.map.shards.length,
      renditions: c.map.renditions.map((r) => ({
        id: r.id,
        status: c.map.shards.map((s) => (s.renditions[r.id]?.status ?? '-')[0]).join(''),
        holders: c.map.shards.map((s) => index.holdersOf(variantKeyString({ contentId: c.meta.id, rendition: r.id, index: s.index })).size),
        cached: c.map.shards.map((s) => (isCached({ contentId: c.meta.id, rendition: r.id, index: s.index }) ? '1' : '0')).join(''),
      })),
      demand: c.map.shards.map((s) => Number(demand.rate(c.meta.id, s.index).toFixed(2))),
    }));
  }

  /**
   * The `holders` answer for shards [from, from + count) of a content: per
   * shard and rendition, the accepted hash, the peers holding it (quarantined
   * ones and the asker left out, the least busy first, those the asker has
   * reported for that shard last) and whether the cache has it.
   */
  holdersOf(content: Content, from: number, count: number, renditionIds: readonly string[] | undefined, asker: string): HolderEntry[] {
    const { index, health, sessions, isCached, reports } = this.s;
    // Each rendition once however often it is named: a request must not multiply its own answer.
    const renditions = renditionIds ? [...new Set(renditionIds)] : content.map.renditions.map((r) => r.id);
    const shards: HolderEntry[] = [];
    const end = Math.min(content.map.shards.length, from + count);
    for (let i = from; i < end; i++) {
      const s = content.map.shards[i]!;
      for (const r of renditions) {
        const st = s.renditions[r];
        if (!st) continue;
        const k = { contentId: content.meta.id, rendition: r, index: i };
        const key = variantKeyString(k);
        const rank = (p: string) => (reports.demoted(asker, key, p) ? 1e9 : 0) + (sessions.get(p)?.serving ?? 0);
        const peers = [...index.holdersOf(key)]
          .filter((p) => p !== asker && !health.isQuarantined(p))
          .sort((a, b) => rank(a) - rank(b))
          .slice(0, MAX_LISTED_HOLDERS);
        shards.push({ index: i, rendition: r, ...(st.sha256 && { sha256: st.sha256 }), peers, cached: isCached(k) });
      }
    }
    return shards;
  }

  /** Connected peers by role, and encoders in quarantine (for /metrics). */
  peerCounts(): { encoder: number; viewer: number; quarantined: number } {
    const out = { encoder: 0, viewer: 0, quarantined: 0 };
    for (const p of this.s.sessions.peers.values()) {
      out[p.role]++;
      if (p.role === 'encoder' && this.s.health.isQuarantined(p.id)) out.quarantined++;
    }
    return out;
  }

  /** Running jobs by class (for /metrics). */
  jobsByClass(): Map<JobClass, number> {
    const byClass = new Map<JobClass, number>([
      ['live', 0],
      ['start', 0],
      ['background', 0],
    ]);
    for (const aj of this.s.ledger.jobs.values()) byClass.set(aj.klass, (byClass.get(aj.klass) ?? 0) + 1);
    return byClass;
  }

  /** Shard variants by public status, and ready ones by live holder count capped at `cap` (for /metrics). */
  variants(cap = 5): { byStatus: Map<string, number>; readyByHolders: Map<number, number> } {
    const byStatus = new Map<string, number>();
    const readyByHolders = new Map<number, number>();
    for (const c of this.s.store.all()) {
      for (const s of c.map.shards) {
        for (const [r, st] of Object.entries(s.renditions)) {
          const status = st.status;
          byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
          if (status !== 'ready') continue;
          const n = Math.min(this.s.index.holdersOf(variantKeyString({ contentId: c.meta.id, rendition: r, index: s.index })).size, cap);
          readyByHolders.set(n, (readyByHolders.get(n) ?? 0) + 1);
        }
      }
    }
    return { byStatus, readyByHolders };
  }

  /** The policies' own counters: cross-checks (with the number waiting) and shard requests counted by Demand. */
  policyCounters() {
    return { trust: this.s.trust.counters, checksWaiting: this.s.checks.queue.length, shardRequests: this.s.demand.requests };
  }

  private health(p: Peer) {
    const { health, trust } = this.s;
    const now = this.s.now();
    const h = health.get(p.id);
    const t = trust.get(p.id);
    return {
      score: Number(health.score(p.id).toFixed(3)),
      speed: Number(h.speed.toFixed(3)),
      ok: h.ok,
      failed: h.failed,
      timedOut: h.timedOut,
      invalid: h.invalid,
      quarantinedUntil: h.quarantinedUntil > now ? h.quarantinedUntil : 0,
      trust: { checkRate: Number(trust.rate(p.id).toFixed(3)), passed: t.passed, failed: t.failed, unverified: trust.unverifiedCount(p.id) },
      ...(h.quarantinedUntil > now && h.quarantineReason && { quarantineReason: h.quarantineReason }),
    };
  }

  /** A snapshot for /api/pool (the shape src/ui/poolView.ts reads). */
  snapshot() {
    const { sessions, ledger, demand, stats, trust, checks } = this.s;
    return {
      peers: [...sessions.peers.values()].map((p) => ({
        id: p.id,
        role: p.role,
        joinedAt: p.joinedAt,
        lastSeen: p.lastSeen,
        jobs: [...p.jobs],
        holdings: p.holdings.size,
        completedJobs: p.completedJobs,
        failedJobs: p.failedJobs,
        shardsEncoded: p.shardsEncoded,
        engines: p.capabilities?.engines ?? [],
        serving: p.serving,
        heldBytes: p.heldBytes,
        ...(p.role === 'encoder' && { health: this.health(p) }),
      })),
      viewers: demand.active().map((v) => ({ contentId: v.contentId, index: v.index })),
      jobs: [...ledger.jobs.values()].map((aj) => ({
        id: aj.job.id,
        peerId: aj.peerId,
        contentId: aj.job.contentId,
        rendition: aj.job.rendition,
        shards: aj.job.shards.map((s) => s.index),
        done: aj.done.size,
        progress: aj.progress,
        deadline: aj.job.deadline,
        klass: aj.klass,
        ...(aj.check && { check: aj.check.stage }),
      })),
      contents: this.heat(),
      counters: { ...stats.counters },
      trust: { ...trust.counters, checksWaiting: checks.queue.length },
      events: stats.window(50),
    };
  }
}
