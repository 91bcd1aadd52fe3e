/**
 * One churn run from start to finish (runChurn): the server child, the
 * contents published, the pool and viewers started, churn applied, settling,
 * and the end-of-run comparison of the server's holder index with the truth.
 */
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { parseServerMessage, type HolderEntry, type ServerMessage } from '../../../src/shared/protocol.ts';
import type { ShardMap } from '../../../src/shared/shardMap.ts';
import { DEFAULT_CHURN_OPTIONS, type ChurnOptions, type ChurnReport } from './options.ts';
import { procStats, startServerProcess, stopServerProcess, type ServerProc } from './server.ts';
import { Churn } from './sim.ts';
import type { Msg } from './simClient.ts';
import { SimViewer } from './simViewer.ts';
import { bump, keyStr, pushExample, sleep } from './util.ts';

export async function runChurn(opts: Partial<ChurnOptions> = {}): Promise<ChurnReport> {
  const o: ChurnOptions = { ...DEFAULT_CHURN_OPTIONS, ...opts };
  const sim = new Churn(o);
  const r = sim.r;
  const wall0 = Date.now();
  const simCpu0 = process.cpuUsage();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const server = await startServerProcess(o);
  const pid = server.child.pid!;
  r.server.pid = pid;
  sim.url = server.url;
  const timers: NodeJS.Timeout[] = [];
  try {
    sim.log(`server pid ${pid} at ${server.url}; publishing ${o.contents} contents`);
    await sim.publish();
    const cpuStart = procStats(pid)?.cpu ?? 0;
    r.server.cpuSecondsStartup = cpuStart;
    const cpuPercents = sampleServer(sim, pid, cpuStart, timers);
    pollCompletion(sim, timers);

    loop.enable();
    sim.t0 = Date.now();
    sim.viewStart = sim.t0 + o.viewerStart * 1000;
    sim.viewEnd = sim.t0 + o.seconds * 1000;
    await startPool(sim, timers);
    publishDuringRun(sim);
    scheduleChurn(sim, timers);
    await runAndSettle(sim, server, timers);
    await readFinalState(sim, pid, cpuStart, cpuPercents);
    loop.disable();
    r.sim.loopDelayP99Ms = loop.percentile(99) / 1e6;
    r.sim.loopDelayMaxMs = loop.max / 1e6;
    const cpu = process.cpuUsage(simCpu0);
    r.sim.cpuSeconds = (cpu.user + cpu.system) / 1e6;
    r.wallSeconds = (Date.now() - wall0) / 1000;
    return r;
  } finally {
    sim.stopping = true;
    for (const t of timers) clearInterval(t);
    for (const v of sim.viewers) v.stop();
    for (const e of sim.encoders) e.shutdown();
    r.server.errorLines = server.errorLines;
    await stopServerProcess(server);
    r.server.exit = server.exit;
    if (!o.keepDataDir) fs.rmSync(server.dataDir, { recursive: true, force: true });
  }
}

/** Samples the server once a second (CPU use per interval, resident memory) into the report; returns the CPU percentages it collects. */
function sampleServer(sim: Churn, pid: number, cpuStart: number, timers: NodeJS.Timeout[]): number[] {
  const r = sim.r;
  let last = { at: Date.now(), cpu: cpuStart };
  const cpuPercents: number[] = [];
  timers.push(
    setInterval(() => {
      const st = procStats(pid);
      if (!st) return;
      const now = Date.now();
      const pct = ((st.cpu - last.cpu) / ((now - last.at) / 1000)) * 100;
      cpuPercents.push(pct);
      last = { at: now, cpu: st.cpu };
      r.server.rssPeakMB = Math.max(r.server.rssPeakMB, st.rss / 2 ** 20);
      r.server.hwmMB = Math.max(r.server.hwmMB, st.hwm / 2 ** 20);
    }, 1000),
  );
  return cpuPercents;
}

/** Sets r.completionSeconds at the first moment every variant of every content is ready. */
function pollCompletion(sim: Churn, timers: NodeJS.Timeout[]): void {
  const r = sim.r;
  let polling = false;
  timers.push(
    setInterval(() => {
      if (polling || r.completionSeconds !== null) return;
      polling = true;
      fetch(`${sim.url}/api/contents`)
        .then((res) => res.json() as Promise<{ contents: { status: string; ready: number; total: number }[] }>)
        .then((j) => {
          if (
            r.completionSeconds === null &&
            sim.uploadsPending === 0 &&
            j.contents.length === sim.contents.length &&
            j.contents.every((c) => c.status === 'ready')
          ) {
            r.completionSeconds = (Date.now() - sim.t0) / 1000;
            sim.log(`all contents ready`);
          }
        })
        .catch(() => {})
        .finally(() => (polling = false));
    }, 250),
  );
}

/** The starting encoders join (a ramp), and every viewer's start is scheduled. */
async function startPool(sim: Churn, timers: NodeJS.Timeout[]): Promise<void> {
  const o = sim.o;
  sim.log(`${o.encoders} encoders join`);
  for (let i = 0; i < o.encoders; i++) {
    sim.addEncoder();
    // A few at a time, so the start is a ramp and not one burst of handshakes.
    if (i % 20 === 19) await sleep(20);
  }
  for (let i = 0; i < o.viewers; i++) {
    const t = setTimeout(
      () => {
        if (sim.stopping) return;
        const v = new SimViewer(sim);
        sim.viewers.push(v);
        v.start();
      },
      (o.viewerStart + (o.viewerRamp * i) / Math.max(1, o.viewers)) * 1000,
    );
    timers.push(t);
  }
}

/** Uploads during the run, one at a time, so the pool always has work arriving. */
function publishDuringRun(sim: Churn): void {
  const { o, r } = sim;
  if (o.publishEverySeconds > 0) {
    sim.uploadsPending = Math.floor((o.seconds * 0.75) / o.publishEverySeconds);
    void (async () => {
      for (let k = 1; sim.uploadsPending > 0 && !sim.stopping; k++) {
        await sleep(sim.t0 + k * o.publishEverySeconds * 1000 - Date.now());
        if (sim.stopping) return;
        try {
          await sim.publish(1);
        } catch (e) {
          bump(r.protocol.errors, `sim:upload-failed`);
          pushExample(r.protocol.errorExamples, `upload during the run: ${(e as Error).message}`);
        }
        sim.uploadsPending--;
      }
    })();
  }
}

/** Churn: departures and joins as Poisson processes, and one batch. */
function scheduleChurn(sim: Churn, timers: NodeJS.Timeout[]): void {
  const o = sim.o;
  const leaveRate = (o.churnPerMin * o.encoders) / 60; // per second
  const exp = (rate: number) => (rate > 0 ? (-Math.log(1 - sim.rand()) / rate) * 1000 : Infinity);
  let nextLeave = sim.t0 + exp(leaveRate);
  let nextJoin = sim.t0 + exp(leaveRate);
  let batchDone = o.batchAt < 0;
  timers.push(
    setInterval(() => {
      const now = Date.now();
      if (now > sim.viewEnd) return;
      while (nextLeave <= now) {
        const live = sim.liveEncoders();
        if (live.length > 0) live[Math.floor(sim.rand() * live.length)]!.depart(sim.rand() < o.silentFraction ? 'silent' : 'close');
        nextLeave += exp(leaveRate);
      }
      while (nextJoin <= now) {
        sim.addEncoder();
        nextJoin += exp(leaveRate);
      }
      if (!batchDone && now >= sim.t0 + o.batchAt * 1000) {
        batchDone = true;
        const live = sim.liveEncoders();
        const n = Math.round(live.length * o.batchFraction);
        for (let i = live.length - 1; i > 0; i--) {
          const j = Math.floor(sim.rand() * (i + 1));
          [live[i], live[j]] = [live[j]!, live[i]!];
        }
        // An exact split, so a short run always has both kinds.
        const silent = Math.round(n * o.batchSilentFraction);
        sim.log(`batch: ${n} of ${live.length} encoders leave at once (${silent} go silent)`);
        live.slice(0, n).forEach((e, i) => {
          e.depart(i < silent ? 'batch-silent' : 'batch-close');
        });
      }
    }, 100),
  );
}

/** Runs until the viewing window ends, then settles; throws if the server exits meanwhile. Stops the simulation's timers. */
async function runAndSettle(sim: Churn, server: ServerProc, timers: NodeJS.Timeout[]): Promise<void> {
  const { o, r } = sim;
  // Progress, and a crash check.
  const status = () => {
    const live = sim.liveEncoders();
    sim.log(
      `encoders live ${live.length}, busy ${live.filter((e) => e.current).length}; viewers ${sim.viewers.length}; lost now ${sim.lostNow().length}; msgs in/out ${r.server.messagesIn}/${r.server.messagesOut}; server RSS ${r.server.rssPeakMB.toFixed(0)} MB`,
    );
  };
  timers.push(setInterval(status, 10_000));

  while (Date.now() < sim.viewEnd) {
    if (server.exit !== null) throw new Error(`the server exited during the run (${server.exit}):\n${server.tail.join('\n')}`);
    await sleep(200);
  }
  status();
  sim.log(`run over; viewers stop watching, churn stops; settling up to ${o.settleSeconds} s`);
  // Paused, not gone: a burst of departures would itself load the server while its final state is read.
  for (const v of sim.viewers) v.pause();
  const lastDeparture = Math.max(0, ...sim.encoders.map((e) => e.leftAt ?? 0));
  const detectBy = lastDeparture + o.heartbeatTimeoutMs + 1500;
  const settleEnd = Date.now() + o.settleSeconds * 1000;
  // Settle until complete, nothing unavailable, and every silent tab noticed; or until time runs out.
  while (Date.now() < settleEnd) {
    if (server.exit !== null) throw new Error(`the server exited while settling (${server.exit}):\n${server.tail.join('\n')}`);
    if (r.completionSeconds !== null && sim.lostNow().length === 0 && Date.now() > detectBy) break;
    await sleep(250);
  }
  sim.stopping = true;
  for (const t of timers) clearInterval(t);
}

/** Final view: the maps, the server's holders for every variant, its counters, health and CPU use, then the simulation's own figures. */
async function readFinalState(sim: Churn, pid: number, cpuStart: number, cpuPercents: number[]): Promise<void> {
  const r = sim.r;
  const maps = new Map<string, ShardMap>();
  for (const c of sim.contents) {
    const j = (await (await fetch(`${sim.url}/api/contents/${c.id}`)).json()) as { shardMap: ShardMap };
    maps.set(c.id, j.shardMap);
  }
  const serverHolders = await locateAll(sim, maps);
  const pool = (await (await fetch(`${sim.url}/api/pool`)).json()) as { counters: Record<string, number> };
  r.server.counters = pool.counters;
  r.server.healthOk = (await fetch(`${sim.url}/api/health`)).ok;
  const st = procStats(pid);
  if (st) {
    r.server.cpuSeconds = st.cpu - cpuStart;
    r.server.rssPeakMB = Math.max(r.server.rssPeakMB, st.rss / 2 ** 20);
    r.server.hwmMB = Math.max(r.server.hwmMB, st.hwm / 2 ** 20);
  }
  const elapsed = (Date.now() - sim.t0) / 1000;
  r.server.peakCpuPercent = Math.max(0, ...cpuPercents);
  r.server.meanCpuPercent = (r.server.cpuSeconds / elapsed) * 100;
  r.server.messagesPerSecond = (r.server.messagesIn + r.server.messagesOut) / elapsed;
  sim.finish(maps, serverHolders);
}

/** One viewer asks for every variant of every content: the server's availability index at the end. */
export async function locateAll(sim: Churn, maps: Map<string, ShardMap>): Promise<Map<string, HolderEntry>> {
  const ws = new WebSocket(`${sim.url.replace(/^http/, 'ws')}/ws`, { perMessageDeflate: false });
  const out = new Map<string, HolderEntry>();
  try {
    const queue: ServerMessage[] = [];
    let wake: (() => void) | undefined;
    ws.on('message', (d) => {
      const r = parseServerMessage((d as Buffer).toString('utf8'));
      if (r.ok) queue.push(r.msg);
      wake?.();
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const next = async <T extends ServerMessage['type']>(type: T): Promise<Msg<T>> => {
      const end = Date.now() + 10_000;
      for (;;) {
        const i = queue.findIndex((m) => m.type === type);
        if (i >= 0) return queue.splice(i, 1)[0] as Msg<T>;
        if (Date.now() > end) throw new Error(`no ${type} from the server within 10 s`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
    };
    ws.send(JSON.stringify({ type: 'hello', protocol: 1, role: 'viewer' }));
    await next('welcome');
    let id = 1;
    for (const [cid, map] of maps) {
      ws.send(JSON.stringify({ type: 'locate', requestId: id++, contentId: cid, from: 0, count: Math.min(10_000, map.shards.length) }));
      const h = await next('holders');
      for (const e of h.shards) out.set(keyStr(cid, e.rendition, e.index), e);
    }
  } finally {
    ws.terminate();
  }
  return out;
}
