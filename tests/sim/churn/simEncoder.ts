/**
 * One simulated encoder tab (SimEncoder): its job queue, the running
 * simulated encode, the shards it holds, replication and the ways it leaves.
 * Owns that tab's holdings and queue; the simulation's truth of who holds what
 * stays in Churn (sim.ts).
 */
import type { Job, ServerMessage } from '../../../src/shared/protocol.ts';
import type { LeaveKind } from './options.ts';
import type { Churn } from './sim.ts';
import { SimClient, type Holding, type Msg, type RunningJob } from './simClient.ts';
import { bump, keyStr, simSha } from './util.ts';

export class SimEncoder extends SimClient {
  state: 'joining' | 'live' | 'silent' | 'gone' = 'joining';
  readonly holdings = new Map<string, Holding>();
  readonly queue: Job[] = [];
  current: RunningJob | undefined;
  readonly speed: number;
  served = 0;
  servedInWindow = 0;
  /** Viewer requests served in the viewing phase, by content id. */
  readonly servedByContent = new Map<string, number>();
  /** Per content: variants held now, since when some were held, and the closed [from, to] spans of holding some (wall ms). */
  readonly heldSpans = new Map<string, { count: number; since: number; spans: [number, number][] }>();
  readonly perSecond = new Map<number, number>();
  private readonly activeUntil: number[] = [];
  joinedAt = Date.now();
  leftAt: number | undefined;
  leaveKind: LeaveKind | undefined;
  closedAt: number | undefined;

  constructor(
    sim: Churn,
    speed?: number,
    private readonly rejoin?: { peerId: string; resume: string; holdings: Map<string, Holding> },
  ) {
    super(sim);
    this.speed = speed ?? sim.o.speedMin + sim.rand() * (sim.o.speedMax - sim.o.speedMin);
  }

  start(): void {
    const holdings = this.rejoin
      ? [...this.rejoin.holdings].map(([k, h]) => {
          const [contentId, rendition, index] = splitKey(k);
          return { key: { contentId, rendition, index }, sha256: h.sha, size: h.size };
        })
      : undefined;
    this.connect({
      role: 'encoder',
      ...(this.rejoin && { peerId: this.rejoin.peerId, resume: this.rejoin.resume }),
      capabilities: { engines: [{ name: 'sim', codecs: ['h264', 'aac'], speed: this.speed }], maxJobs: 1 },
      ...(holdings && { holdings }),
    });
  }

  override explain(message: string): string {
    const id = /job ([0-9a-f]+)/.exec(message)?.[1];
    if (!id) return '';
    return ` [sim: job received ${this.jobsSeen.has(id)}, cancel received ${this.cancelsSeen.has(id)}, state ${this.state}]`;
  }

  get live(): boolean {
    return this.state === 'live';
  }

  /** Transfers this holder is serving right now (heartbeat `serving`). */
  serving(): number {
    const now = Date.now();
    while (this.activeUntil.length && this.activeUntil[0]! < now) this.activeUntil.shift();
    return this.activeUntil.length;
  }

  /** A viewer (or a replicating peer) fetched a shard of `contentId` from us. */
  serve(kind: 'view' | 'copy', contentId = ''): void {
    const now = Date.now();
    // Requests arrive roughly in order, so the list stays sorted enough to prune from its head.
    this.activeUntil.push(now + this.sim.o.transferMs / this.sim.o.timeScale);
    if (kind === 'copy') return;
    this.served++;
    if (this.sim.inViewingPhase(now)) {
      this.servedInWindow++;
      this.servedByContent.set(contentId, (this.servedByContent.get(contentId) ?? 0) + 1);
    }
    const sec = Math.floor((now - this.sim.t0) / 1000);
    this.perSecond.set(sec, (this.perSecond.get(sec) ?? 0) + 1);
  }

  onMessage(msg: ServerMessage): void {
    if (this.state === 'silent' || this.state === 'gone') return;
    switch (msg.type) {
      case 'welcome':
        this.state = 'live';
        this.sim.encoderLive(this);
        this.startHeartbeat(msg.heartbeatMs, () => ({
          activeJobs: this.current ? 1 : 0,
          heldBytes: [...this.holdings.values()].reduce((a, h) => a + h.size, 0),
          serving: this.serving(),
        }));
        if (this.rejoin) for (const [k, h] of this.rejoin.holdings) this.hold(k, { ...h, via: 'rejoin' });
        return;
      case 'job':
        this.sim.jobAssigned(this, msg.job);
        this.jobsSeen.add(msg.job.id);
        this.queue.push(msg.job);
        // We said maxJobs 1; a job right after a cancel (preemption) is fine, the cancelled run is ending.
        if (this.current && !this.current.cancelled) bump(this.sim.r.protocol.errors, 'sim:job-while-busy');
        this.pump();
        return;
      case 'job-cancel':
        this.cancelsSeen.add(msg.jobId);
        this.cancel(msg.jobId);
        return;
      case 'shard-accepted':
      case 'shard-rejected': {
        const k = keyStr(msg.key.contentId, msg.key.rendition, msg.key.index);
        const sent = this.reported.get(k);
        this.reported.delete(k);
        if (msg.type === 'shard-rejected') this.sim.r.encoders.rejected++;
        else {
          if (msg.sha256 !== simSha(k)) bump(this.sim.r.protocol.errors, 'sim:accepted-with-another-hash');
          // Like a tab, the shard was stored before it was reported: it is held whatever became of the job.
          if (sent) this.sim.acceptRtt.push(Date.now() - sent.at);
          this.hold(k, { sha: msg.sha256, size: sent?.size ?? 1, via: 'encode' });
          this.sim.accepted(k);
        }
        this.current?.verdicts.get(k)?.(msg.type === 'shard-accepted');
        return;
      }
      case 'replicate':
        this.replicate(msg);
        return;
      case 'release':
        this.release(msg);
        return;
      default:
        return;
    }
  }

  onClose(code: number, reason: string): void {
    this.closedAt = Date.now();
    if (this.state === 'silent') {
      this.sim.silentDetected(this, code);
    } else if (this.state === 'live' || this.state === 'joining') {
      // The server dropped a tab that was doing its part: with a healthy simulation this should not happen.
      bump(this.sim.r.protocol.unexpectedCloses, `${code} ${reason}`);
      this.depart('kicked');
    }
    this.state = 'gone';
  }

  readonly jobsSeen = new Set<string>();
  readonly cancelsSeen = new Set<string>();

  /** Shards reported and not yet answered: when, and their size. */
  private readonly reported = new Map<string, { at: number; size: number }>();

  private hold(k: string, h: Holding): void {
    this.holdings.set(k, h);
    this.sim.holderAdded(this, k);
  }

  private cancel(jobId: string): void {
    this.sim.r.requeue.jobsCancelled++;
    const qi = this.queue.findIndex((j) => j.id === jobId);
    if (qi >= 0) this.queue.splice(qi, 1);
    if (this.current?.job.id === jobId) abort(this.current);
  }

  private pump(): void {
    if (this.current || !this.live) return;
    const job = this.queue.shift();
    if (!job) return;
    const run: RunningJob = { job, cancelled: false, timers: [], wake: undefined, verdicts: new Map(), accepted: new Set() };
    this.current = run;
    void this.run(run).finally(() => {
      if (this.current === run) this.current = undefined;
      this.pump();
    });
  }

  private async run(run: RunningJob): Promise<void> {
    const { job } = run;
    const o = this.sim.o;
    if (o.fetchSource) {
      try {
        const res = await fetch(new URL(job.sourceUrl, this.sim.url));
        await res.arrayBuffer();
        if (!res.ok) bump(this.sim.r.protocol.errors, `source:${res.status}`);
      } catch (e) {
        bump(this.sim.r.protocol.errors, `source:${(e as Error).message}`);
      }
      if (run.cancelled || !this.live) return;
    }
    const encodeMs = ((job.end - job.start) / this.speed / o.timeScale) * 1000;
    const t0 = Date.now();
    // Progress once a second, like a tab; the last step is the shard reports.
    await new Promise<void>((resolve) => {
      run.wake = resolve;
      const tick = () => {
        if (run.cancelled || !this.live) return resolve();
        const elapsed = Date.now() - t0;
        if (elapsed >= encodeMs) return resolve();
        this.send({ type: 'job-progress', jobId: job.id, progress: Math.min(0.99, elapsed / encodeMs) });
        run.timers.push(setTimeout(tick, Math.min(1000, encodeMs - elapsed)));
      };
      run.timers.push(setTimeout(tick, Math.min(1000, encodeMs)));
    });
    if (run.cancelled || !this.live) return;
    const verdicts: Promise<boolean>[] = [];
    job.shards.forEach((s, i) => {
      const k = keyStr(job.contentId, job.rendition, s.index);
      verdicts.push(
        new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 15_000);
          run.timers.push(timer);
          run.verdicts.set(k, (ok) => {
            clearTimeout(timer);
            run.verdicts.delete(k);
            if (ok) run.accepted.add(s.index);
            resolve(ok);
          });
        }),
      );
      // Audio: the run's first shard carries the priming packet and the lead, the last the tail (audioCutter.ts).
      const audio =
        job.kind === 'audio'
          ? {
              lead: i === 0 ? (1 + (job.leadPackets ?? 0)) * 1024 : 0,
              tail: i === job.shards.length - 1 ? (job.tailPackets ?? 0) * 1024 : 0,
            }
          : {};
      this.sim.r.encoders.shardsReported++;
      this.reported.set(k, { at: Date.now(), size: shardSize(job, s) });
      this.send({
        type: 'shard-ready',
        jobId: job.id,
        key: { contentId: job.contentId, rendition: job.rendition, index: s.index },
        sha256: simSha(k),
        size: shardSize(job, s),
        engine: 'sim',
        ...audio,
      });
    });
    await Promise.all(verdicts);
    if (run.cancelled || !this.live) return;
    this.send({ type: 'job-done', jobId: job.id });
  }

  private replicateSecond = { at: 0, n: 0 };

  private replicate(msg: Msg<'replicate'>): void {
    this.sim.r.protocol.replicates++;
    const sec = Math.floor(Date.now() / 1000);
    if (this.replicateSecond.at !== sec) this.replicateSecond = { at: sec, n: 0 };
    this.sim.r.protocol.replicatesPeakPerSecond = Math.max(this.sim.r.protocol.replicatesPeakPerSecond, ++this.replicateSecond.n);
    const k = keyStr(msg.key.contentId, msg.key.rendition, msg.key.index);
    const fail = (reason: string) => {
      this.sim.r.protocol.replicateFailed++;
      bump(this.sim.r.protocol.errors, `sim:replicate-failed:${reason}`);
      this.send({ type: 'replicate-failed', key: msg.key, reason });
    };
    if (msg.sha256 !== simSha(k)) {
      fail('hash differs from what every encoder makes');
      return;
    }
    const t = setTimeout(
      () => {
        if (!this.live) return;
        if (this.holdings.has(k)) {
          this.sim.r.protocol.errors['sim:replicate-of-held'] = (this.sim.r.protocol.errors['sim:replicate-of-held'] ?? 0) + 1;
          this.send({ type: 'shard-stored', key: msg.key, sha256: msg.sha256, size: this.holdings.get(k)!.size });
          return;
        }
        // A real tab would connect to each listed peer in turn; here a listed peer serves if it is alive and holds the shard.
        const sources = msg.from.map((p) => this.sim.byPeerId.get(p)).filter((e): e is SimEncoder => !!e && e.live && e.holdings.has(k));
        const src = sources[Math.floor(this.sim.rand() * sources.length)];
        if (src) {
          src.serve('copy', msg.key.contentId);
          this.sim.r.load.replicationCopies++;
        } else if (!msg.cached) {
          return fail('no listed source could serve it');
        }
        this.hold(k, { sha: msg.sha256, size: msg.size, via: 'replica' });
        this.sim.accepted(k);
        this.send({ type: 'shard-stored', key: msg.key, sha256: msg.sha256, size: msg.size });
      },
      (this.sim.o.copyMs * (0.5 + this.sim.rand())) / this.sim.o.timeScale,
    );
    t.unref();
  }

  private release(msg: Msg<'release'>): void {
    this.sim.r.protocol.releases++;
    const k = keyStr(msg.key.contentId, msg.key.rendition, msg.key.index);
    if (!this.holdings.delete(k)) this.sim.r.protocol.releasesOfUnheld++;
    else this.sim.holderRemoved(this, k);
    this.send({ type: 'shard-dropped', key: msg.key });
  }

  /** Leaves the pool: closes the socket (a closed tab or a crash) or goes silent (a hung tab). */
  depart(kind: LeaveKind): void {
    if (this.state === 'gone' || this.leftAt !== undefined) return;
    this.leftAt = Date.now();
    this.leaveKind = kind;
    const silent = kind === 'silent' || kind === 'batch-silent';
    clearInterval(this.heartbeatTimer);
    this.state = silent ? 'silent' : 'gone';
    if (this.current) abort(this.current);
    this.sim.departed(this, kind);
    if (kind === 'close' || kind === 'batch-close') {
      // Half close politely, half vanish like a crashed browser: the server sees both at once.
      if (this.sim.rand() < 0.5) this.ws?.close(1001, 'tab closed');
      else this.ws?.terminate();
    }
  }

  /** Ends the socket at the end of the run, without counting as churn. */
  shutdown(): void {
    clearInterval(this.heartbeatTimer);
    if (this.current) abort(this.current);
    this.state = 'gone';
    this.ws?.terminate();
  }
}

export function abort(run: RunningJob): void {
  run.cancelled = true;
  for (const t of run.timers) clearTimeout(t);
  run.wake?.();
  for (const v of [...run.verdicts.values()]) v(false);
}

export function splitKey(k: string): [string, string, number] {
  const a = k.split('/');
  return [a[0]!, a[1]!, Number(a[2])];
}

/** Bytes a real encoder would make for the shard: its rendition's bitrate over its duration. */
export function shardSize(job: Job, s: Job['shards'][number]): number {
  const bps = job.video?.bitrate ?? job.audio?.bitrate ?? 100_000;
  return Math.max(200, Math.round((bps * s.duration) / 8));
}
