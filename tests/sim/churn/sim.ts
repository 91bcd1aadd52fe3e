/**
 * The simulation's state (Churn): the live encoders and viewers, the truth of
 * which live encoder holds which variant, and the departures, losses and
 * reassignments the report counts. Owns the ChurnReport while a run fills it.
 */
import fs from 'node:fs';
import type { HolderEntry, Job } from '../../../src/shared/protocol.ts';
import type { ShardMap } from '../../../src/shared/shardMap.ts';
import { fixture } from '../../harness/fixtures.ts';
import { rng } from '../../harness/rng.ts';
import type { ChurnOptions, ChurnReport, LeaveKind } from './options.ts';
import { SIM_ADMIN_TOKEN } from './server.ts';
import type { Holding, SimContent } from './simClient.ts';
import { SimEncoder, splitKey } from './simEncoder.ts';
import type { SimViewer } from './simViewer.ts';
import { bump, dist, keyStr, pushExample } from './util.ts';

export class Churn {
  readonly r: ChurnReport;
  url = '';
  t0 = 0;
  viewStart = 0;
  viewEnd = Infinity;
  stopping = false;
  readonly rand: () => number;
  readonly encoders: SimEncoder[] = [];
  readonly viewers: SimViewer[] = [];
  readonly byPeerId = new Map<string, SimEncoder>();
  contents: SimContent[] = [];
  /** Variant key -> live encoders holding it (the simulation's truth). */
  private readonly liveHolders = new Map<string, Set<SimEncoder>>();
  private readonly everAccepted = new Set<string>();
  private readonly orphaned = new Set<string>();
  private readonly recovered = new Set<string>();
  /** Unfinished shards of departed encoders, waiting for someone else's job. */
  private readonly awaiting = new Map<string, { at: number; kind: LeaveKind }>();
  private readonly reassign: { ms: number; kind: LeaveKind }[] = [];
  private readonly assignedTo = new Map<string, SimEncoder>();
  readonly acceptRtt: number[] = [];
  readonly locateRtt: number[] = [];
  readonly startup: number[] = [];
  private readonly silentDetect: number[] = [];

  constructor(readonly o: ChurnOptions) {
    this.rand = rng(o.seed);
    const { log: _log, ...opts } = o;
    this.r = {
      options: opts,
      wallSeconds: 0,
      contents: [],
      completionSeconds: null,
      lost: { atEnd: 0, orphanedDuringRun: 0, recovered: 0, notReadyAtEnd: 0, examples: [] },
      requeue: {
        departures: { close: 0, silent: 0, 'batch-close': 0, 'batch-silent': 0, kicked: 0 },
        departuresWithWork: 0,
        shardsLeftUnfinished: 0,
        silentDetectMs: dist([]),
        silentUndetected: 0,
        reassignMs: dist([]),
        reassignByKind: {},
        neverReassigned: 0,
        reencodeJobs: 0,
        duplicateAssignments: 0,
        jobsCancelled: 0,
      },
      load: { viewerRequests: 0, replicationCopies: 0, byContent: [], meanRps: 0, busiestRps: 0, busiestToMean: 0, peakSecond: 0, idleHolders: 0 },
      viewers: {
        fromPeers: 0,
        fromCache: 0,
        missesUnencoded: 0,
        missesNoHolder: 0,
        staleHolderPicks: 0,
        stallSeconds: 0,
        startupMs: dist([]),
        locateRttMs: dist([]),
        locatesUnanswered: 0,
        watchesFinished: 0,
      },
      encoders: { joined: 0, peakLive: 0, liveAtEnd: 0, acceptRttMs: dist([]), shardsReported: 0, rejected: 0 },
      server: {
        pid: 0,
        cpuSeconds: 0,
        cpuSecondsStartup: 0,
        peakCpuPercent: 0,
        meanCpuPercent: 0,
        rssPeakMB: 0,
        hwmMB: 0,
        messagesIn: 0,
        messagesOut: 0,
        messagesPerSecond: 0,
        byType: {},
        healthOk: false,
        exit: null,
        errorLines: [],
        counters: {},
      },
      protocol: {
        errors: {},
        errorExamples: [],
        invalidServerMessages: 0,
        invalidExamples: [],
        replicates: 0,
        replicatesPeakPerSecond: 0,
        replicateFailed: 0,
        releases: 0,
        releasesOfUnheld: 0,
        serverOnlyHolders: 0,
        simOnlyHolders: 0,
        mismatchExamples: [],
        unexpectedCloses: {},
      },
      sim: { cpuSeconds: 0, loopDelayP99Ms: 0, loopDelayMaxMs: 0 },
    };
  }

  log(line: string): void {
    this.o.log?.(`[churn ${((Date.now() - (this.t0 || Date.now())) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  }

  inViewingPhase(now: number): boolean {
    return now >= this.viewStart && now <= this.viewEnd;
  }

  pickContent(): SimContent {
    const total = this.contents.reduce((a, c) => a + c.weight, 0);
    let x = this.rand() * total;
    for (const c of this.contents) if ((x -= c.weight) <= 0) return c;
    return this.contents[this.contents.length - 1]!;
  }

  liveEncoders(): SimEncoder[] {
    return this.encoders.filter((e) => e.live);
  }

  // ---- bookkeeping called by the clients

  addEncoder(rejoin?: { peerId: string; resume: string; holdings: Map<string, Holding>; speed: number }): SimEncoder {
    const e = new SimEncoder(this, rejoin?.speed, rejoin);
    this.encoders.push(e);
    this.r.encoders.joined++;
    e.start();
    return e;
  }

  encoderLive(e: SimEncoder): void {
    this.byPeerId.set(e.peerId, e);
    e.joinedAt = Date.now();
    this.r.encoders.peakLive = Math.max(this.r.encoders.peakLive, this.liveEncoders().length);
  }

  jobAssigned(e: SimEncoder, job: Job): void {
    let reencode = false;
    for (const s of job.shards) {
      const k = keyStr(job.contentId, job.rendition, s.index);
      const w = this.awaiting.get(k);
      if (w) {
        this.reassign.push({ ms: Date.now() - w.at, kind: w.kind });
        this.awaiting.delete(k);
      } else {
        const prev = this.assignedTo.get(k);
        const prevJob = prev?.current?.job;
        if (
          prev &&
          prev !== e &&
          prev.live &&
          prevJob &&
          !prev.current!.cancelled &&
          prevJob.shards.some((x) => keyStr(job.contentId, job.rendition, x.index) === k)
        ) {
          // Messages on different sockets are read in any order: the old holder's cancel, or the server
          // dropping it, may still be on the way. Only if neither comes did two live tabs get one shard.
          setTimeout(() => {
            if (!prev.cancelsSeen.has(prevJob.id) && prev.closedAt === undefined && !this.stopping) this.r.requeue.duplicateAssignments++;
          }, 2000).unref();
        }
      }
      if (this.everAccepted.has(k)) reencode = true;
      this.assignedTo.set(k, e);
    }
    if (reencode) this.r.requeue.reencodeJobs++;
  }

  accepted(k: string): void {
    this.everAccepted.add(k);
  }

  holderAdded(e: SimEncoder, k: string): void {
    let set = this.liveHolders.get(k);
    if (!set) this.liveHolders.set(k, (set = new Set()));
    if (!set.has(e)) {
      set.add(e);
      const cid = splitKey(k)[0];
      let h = e.heldSpans.get(cid);
      if (!h) e.heldSpans.set(cid, (h = { count: 0, since: 0, spans: [] }));
      if (h.count++ === 0) h.since = Date.now();
    }
    if (this.orphaned.has(k)) this.recovered.add(k);
  }

  holderRemoved(e: SimEncoder, k: string): void {
    const set = this.liveHolders.get(k);
    if (set?.delete(e)) {
      const h = e.heldSpans.get(splitKey(k)[0]);
      if (h && --h.count === 0) h.spans.push([h.since, Date.now()]);
    }
    if (set && set.size === 0) {
      this.liveHolders.delete(k);
      if (this.everAccepted.has(k)) {
        this.orphaned.add(k);
        this.recovered.delete(k);
      }
    }
  }

  departed(e: SimEncoder, kind: LeaveKind): void {
    this.r.requeue.departures[kind]++;
    for (const k of e.holdings.keys()) this.holderRemoved(e, k);
    const unfinished = [...(e.current ? [e.current.job] : []), ...e.queue];
    let left = 0;
    for (const job of unfinished) {
      for (const s of job.shards) {
        const k = keyStr(job.contentId, job.rendition, s.index);
        if (e.current?.job === job && e.current.accepted.has(s.index)) continue;
        if (this.assignedTo.get(k) === e) {
          this.awaiting.set(k, { at: e.leftAt ?? Date.now(), kind });
          left++;
        }
      }
    }
    if (left > 0) {
      this.r.requeue.departuresWithWork++;
      this.r.requeue.shardsLeftUnfinished += left;
    }
    e.queue.length = 0;
    if (kind === 'close' && this.rand() < this.o.rejoinFraction && !this.stopping) {
      // A reload: the same tab comes back with what it kept in IndexedDB.
      const holdings = new Map(e.holdings);
      const { peerId, resume } = e;
      setTimeout(
        () => {
          if (!this.stopping) this.addEncoder({ peerId, resume, holdings, speed: e.speed });
        },
        500 + this.rand() * 2000,
      ).unref();
    }
  }

  silentDetected(e: SimEncoder, code: number): void {
    if (code !== 4000) bump(this.r.protocol.unexpectedCloses, `silent encoder closed with ${code}`);
    // Measured from its last heartbeat: that is where the server's timeout starts.
    this.silentDetect.push(Date.now() - e.lastSent);
  }

  // ---- the run

  private readonly files = new Map<string, Uint8Array>();
  /** Uploads still to come during the run (publishEverySeconds). */
  uploadsPending = 0;

  async publish(n = this.o.contents): Promise<void> {
    const files = this.files;
    for (let n0 = this.contents.length, i = n0; i < n0 + n; i++) {
      const name = this.o.fixtures[i % this.o.fixtures.length]!;
      if (!files.has(name)) files.set(name, fs.readFileSync(await fixture(name)));
      const q = this.o.shardDuration > 0 ? `?shardDuration=${this.o.shardDuration}` : '';
      const res = await fetch(`${this.url}/api/contents${q}`, {
        method: 'POST',
        body: files.get(name) as unknown as BodyInit,
        headers: { 'Content-Type': 'application/octet-stream', 'X-Filename': `${name}-${i}.mp4`, Authorization: `Bearer ${SIM_ADMIN_TOKEN}` },
      });
      const json = (await res.json()) as { id: string };
      if (res.status !== 201) throw new Error(`upload of ${name} failed: ${res.status} ${JSON.stringify(json)}`);
      const c = (await (await fetch(`${this.url}/api/contents/${json.id}`)).json()) as { shardMap: ShardMap };
      const map = c.shardMap;
      const video = map.renditions.filter((r) => 'video' in r).sort((a, b) => ('video' in b ? b.video.bitrate : 0) - ('video' in a ? a.video.bitrate : 0));
      const last = map.shards[map.shards.length - 1]!;
      this.contents.push({
        id: json.id,
        fixture: name,
        map,
        starts: map.shards.map((s) => s.start),
        duration: last.start + last.duration,
        video: video.map((r) => r.id),
        audio: map.renditions.find((r) => 'audio' in r)?.id,
        weight: 1 / Math.pow(this.contents.length + 1, this.o.zipf),
      });
    }
  }

  /** Variants still unavailable: accepted once, and now without a live holder. */
  lostNow(): string[] {
    return [...this.everAccepted].filter((k) => !this.liveHolders.has(k));
  }

  /** Fills the report's end-of-run figures from the simulation's truth, `maps` (the server's shard maps by content id) and `serverHolders` (its holder index by variant key). */
  finish(maps: Map<string, ShardMap>, serverHolders: Map<string, HolderEntry>): void {
    const r = this.r;
    const now = Date.now();
    this.finishRequeue(maps);
    this.finishLoss(maps, serverHolders);
    this.finishLoad(now);
    r.viewers.startupMs = dist(this.startup);
    r.viewers.locateRttMs = dist(this.locateRtt);
    r.encoders.acceptRttMs = dist(this.acceptRtt);
    r.encoders.liveAtEnd = this.liveEncoders().length;
  }

  /** Re-queue figures: how fast departures were noticed and their unfinished shards reassigned. */
  private finishRequeue(maps: Map<string, ShardMap>): void {
    const r = this.r;
    r.requeue.silentDetectMs = dist(this.silentDetect);
    r.requeue.silentUndetected = this.encoders.filter((e) => (e.leaveKind === 'silent' || e.leaveKind === 'batch-silent') && e.closedAt === undefined).length;
    r.requeue.reassignMs = dist(this.reassign.map((x) => x.ms));
    for (const kind of Object.keys(r.requeue.departures) as LeaveKind[]) {
      const xs = this.reassign.filter((x) => x.kind === kind).map((x) => x.ms);
      if (xs.length) r.requeue.reassignByKind[kind] = dist(xs);
    }
    // A shard reported just before the socket went is accepted without the encoder hearing so: not unfinished.
    r.requeue.neverReassigned = [...this.awaiting.keys()].filter((k) => {
      const [cid, rend, idx] = splitKey(k);
      return maps.get(cid)?.shards[idx]?.renditions[rend]?.status !== 'ready';
    }).length;
  }

  /** Lost shards and readiness, and the server's holder index against the truth. */
  private finishLoss(maps: Map<string, ShardMap>, serverHolders: Map<string, HolderEntry>): void {
    const r = this.r;
    for (const c of this.contents) {
      const map = maps.get(c.id)!;
      let variants = 0;
      let ready = 0;
      for (const s of map.shards) {
        for (const [rend, st] of Object.entries(s.renditions)) {
          variants++;
          if (st.status === 'ready') ready++;
          const k = keyStr(c.id, rend, s.index);
          const entry = serverHolders.get(k);
          const live = this.liveHolders.get(k);
          if (this.everAccepted.has(k) && !live && !entry?.cached) {
            r.lost.atEnd++;
            pushExample(r.lost.examples, `${k} (${st.status})`);
          }
          // The server's availability index against what the simulated tabs really hold.
          const listed = new Set(entry?.peers ?? []);
          for (const p of listed) {
            const e = this.byPeerId.get(p);
            if (!e || !e.live || !e.holdings.has(k)) {
              r.protocol.serverOnlyHolders++;
              // (e.g. a released replica the server still lists, or a departed tab it has not noticed)
              pushExample(r.protocol.mismatchExamples, `server lists ${p} for ${k}; sim: ${e ? `${e.state}, holds=${e.holdings.has(k)}` : 'unknown peer'}`);
            }
          }
          for (const e of live ?? []) {
            if (!listed.has(e.peerId)) {
              r.protocol.simOnlyHolders++;
              pushExample(
                r.protocol.mismatchExamples,
                `${e.peerId} holds ${k} (via ${e.holdings.get(k)?.via}) but the server does not list it; status ${st.status}`,
              );
            }
          }
        }
      }
      r.contents.push({ id: c.id, fixture: c.fixture, shards: map.shards.length, variants, readyAtEnd: ready });
      r.lost.notReadyAtEnd += variants - ready;
    }
    r.lost.orphanedDuringRun = this.orphaned.size;
    r.lost.recovered = [...this.orphaned].filter((k) => this.liveHolders.has(k)).length;
  }

  /** Holder load over the viewing phase, per content, over the holders of that content. */
  private finishLoad(now: number): void {
    const r = this.r;
    const end = Math.min(now, this.viewEnd);
    for (const e of this.encoders) {
      const from = Math.max(e.joinedAt, this.viewStart);
      const to = Math.min(e.leftAt ?? end, end);
      if (to - from < 5000) continue;
      if (e.servedInWindow === 0 && e.holdings.size > 0) r.load.idleHolders++;
    }
    for (const c of this.contents) {
      const rates: number[] = [];
      let requests = 0;
      for (const e of this.encoders) {
        const h = e.heldSpans.get(c.id);
        if (!h) continue;
        const spans = h.count > 0 ? [...h.spans, [h.since, end] as [number, number]] : h.spans;
        const heldMs = spans.reduce((a, [f, t]) => a + Math.max(0, Math.min(t, end) - Math.max(f, this.viewStart)), 0);
        const served = e.servedByContent.get(c.id) ?? 0;
        requests += served;
        if (heldMs < 5000) continue;
        rates.push(served / (heldMs / 1000));
      }
      const mean = rates.length ? rates.reduce((a, b) => a + b, 0) / rates.length : 0;
      const busiest = rates.length ? Math.max(...rates) : 0;
      r.load.byContent.push({
        contentId: c.id,
        fixture: c.fixture,
        requests,
        holders: rates.length,
        meanRps: mean,
        busiestRps: busiest,
        busiestToMean: mean > 0 ? busiest / mean : 0,
      });
    }
    const top = [...r.load.byContent].sort((a, b) => b.requests - a.requests)[0];
    r.load.viewerRequests = this.encoders.reduce((a, e) => a + e.served, 0);
    r.load.meanRps = top?.meanRps ?? 0;
    r.load.busiestRps = top?.busiestRps ?? 0;
    r.load.busiestToMean = top?.busiestToMean ?? 0;
    r.load.peakSecond = Math.max(0, ...this.encoders.flatMap((e) => [...e.perSecond.values()]));
  }
}
