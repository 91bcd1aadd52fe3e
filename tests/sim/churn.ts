/**
 * A churn simulator: the real server (a child process, so its own CPU time and
 * memory can be read from /proc) driven by many simulated encoders and viewers
 * that speak the real WebSocket protocol from this one Node process.
 *
 * Nothing is encoded and no shard bytes exist. An encoder "encodes" a job by
 * waiting the job's content length divided by its speed, then reports every
 * shard with a hash all simulated encoders agree on (SHA-256 of the shard key),
 * so any two encoders of one shard agree like honest real ones. A viewer
 * "fetches" a shard by trying the holders the server listed in the order the
 * watch page tries them (src/viewer/Viewer.ts: the list shuffled, then peers
 * it already has a connection to first; at most maxPeers connections, the
 * least recently used closed) and counting a request against the first live
 * one, in process.
 *
 * Library: `runChurn(opts)` resolves to a ChurnReport; `formatReport` prints it.
 * CLI:     npx tsx tests/sim/churn.ts --encoders 200 --viewers 500 --contents 4 --seconds 120
 *          (every ChurnOptions field is a kebab-case flag; --server-arg X and
 *          --server-env K=V pass options to the server; --json prints the report as JSON).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { parseServerMessage, type ClientMessage, type HolderEntry, type Job, type ServerMessage } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture, type FixtureName } from '../harness/fixtures.ts';
import { parseChurnArgs } from './churnCli.ts';
import { rng } from '../harness/rng.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

// ---------------------------------------------------------------- options and report

export interface ChurnOptions {
  /** Encoders at the start, and the size joins keep the pool near. */
  encoders: number;
  viewers: number;
  /** Contents published before anyone joins; they alternate between the fixtures below. */
  contents: number;
  /**
   * Wall seconds between further uploads during the first three quarters of the
   * run (0: none), so work keeps arriving and departures land on running jobs,
   * not only on finished holders; the last quarter lets the last ones finish.
   */
  publishEverySeconds: number;
  /** Fixtures the contents are made from, in turn. */
  fixtures: FixtureName[];
  /** Length of the churn and viewing phase, wall seconds. */
  seconds: number;
  /** After the phase: wall seconds allowed for the pool to finish and repair before the final count. */
  settleSeconds: number;
  /** Simulated seconds per wall second for encoding, copying and playback (heartbeats stay real). */
  timeScale: number;
  /** Encoder speed range, content seconds encoded per simulated second (uniform per encoder). */
  speedMin: number;
  speedMax: number;
  /** Share of the pool leaving per minute, at random (Poisson); joins arrive at the same rate of the target size. */
  churnPerMin: number;
  /** Share of departures that go silent (socket open, no heartbeats) rather than closing. */
  silentFraction: number;
  /** Share of closing departures that come back a little later with the same peer id and their holdings (a reload). */
  rejoinFraction: number;
  /** Wall seconds after the start when a batch leaves at once; negative for none. */
  batchAt: number;
  /** Share of the live pool in the batch. */
  batchFraction: number;
  /** Share of the batch that goes silent rather than closing. */
  batchSilentFraction: number;
  /** Server heartbeat period and timeout, ms (passed as flags). */
  heartbeatMs: number;
  heartbeatTimeoutMs: number;
  /** Viewer settings, as the watch page's (src/viewer/config.ts). */
  lookAheadSeconds: number;
  locateEveryMs: number;
  /** Peer connections a viewer keeps at once, least recently used closed first (src/viewer/config.ts maxPeers). */
  maxPeers: number;
  /** A shard nobody can provide is waited for this long (wall ms) before it is skipped. */
  missingGraceMs: number;
  /** Before the first shard plays, it is waited for this long (wall ms). */
  startWaitMs: number;
  /** Wall seconds after the start when viewers begin to join, and over how long they arrive. */
  viewerStart: number;
  viewerRamp: number;
  /** Content popularity: viewers pick content i with weight 1/(i+1)^zipf (0: uniform). */
  zipf: number;
  /** Simulated ms one served request keeps a holder busy (what heartbeat `serving` counts). */
  transferMs: number;
  /** Simulated ms a `replicate` copy takes before `shard-stored`. */
  copyMs: number;
  /** Encoders GET their job's source slice first, as real ones do (server remux work). */
  fetchSource: boolean;
  /** Validate every server message with the protocol's zod schema (costs sim CPU). */
  validate: boolean;
  /** Shard duration asked for at upload, seconds (the server's default when 0). */
  shardDuration: number;
  /** Extra server flags (e.g. for keys the pool manager adds) and environment. */
  serverArgs: string[];
  serverEnv: Record<string, string>;
  /** Node flags for the server process, e.g. --cpu-prof --cpu-prof-dir=/tmp/prof to find its slow paths. */
  serverNodeArgs: string[];
  /** Seed of the simulation's choices (timings still vary with the machine). */
  seed: number;
  keepDataDir: boolean;
  /** Progress lines; silent when undefined. */
  log?: (line: string) => void;
}

export const DEFAULT_CHURN_OPTIONS: ChurnOptions = {
  encoders: 20,
  viewers: 30,
  contents: 2,
  publishEverySeconds: 0,
  fixtures: ['long-tiny', 'av-2997'],
  seconds: 60,
  settleSeconds: 30,
  timeScale: 1,
  speedMin: 2,
  speedMax: 20,
  churnPerMin: 0.2,
  silentFraction: 0.5,
  rejoinFraction: 0.2,
  batchAt: 10,
  batchFraction: 0.25,
  batchSilentFraction: 0.5,
  heartbeatMs: 2000,
  heartbeatTimeoutMs: 6000,
  lookAheadSeconds: 6,
  locateEveryMs: 1000,
  maxPeers: 8,
  missingGraceMs: 1500,
  startWaitMs: 10_000,
  viewerStart: 2,
  viewerRamp: 5,
  zipf: 1,
  transferMs: 150,
  copyMs: 300,
  fetchSource: false,
  validate: true,
  shardDuration: 0,
  serverArgs: [],
  serverEnv: {},
  serverNodeArgs: [],
  seed: 1,
  keepDataDir: false,
};

export interface Dist {
  n: number;
  median: number;
  p95: number;
  max: number;
}

export interface ContentLoad {
  contentId: string;
  fixture: string;
  requests: number;
  holders: number;
  meanRps: number;
  busiestRps: number;
  busiestToMean: number;
}

export type LeaveKind = 'close' | 'silent' | 'batch-close' | 'batch-silent' | 'kicked';

export interface ChurnReport {
  options: Omit<ChurnOptions, 'log'>;
  wallSeconds: number;
  contents: { id: string; fixture: string; shards: number; variants: number; readyAtEnd: number }[];
  /**
   * Seconds from the first encoder joining until every variant of every content
   * was ready, counted once the last upload is in (null: never).
   */
  completionSeconds: number | null;
  lost: {
    /** Variants accepted at some point that, at the end, no live encoder holds and the cache lacks. */
    atEnd: number;
    /** Variants that at some moment had no live holder (every holder gone). */
    orphanedDuringRun: number;
    /** Of those, how many a live encoder held again by the end (re-encoded or replicated). */
    recovered: number;
    /** Variants not `ready` at the end (pending, encoding or failed). */
    notReadyAtEnd: number;
    examples: string[];
  };
  requeue: {
    departures: Record<LeaveKind, number>;
    /** Silent departures: from the last heartbeat sent to the server closing the socket (4000). */
    silentDetectMs: Dist;
    /** Silent departures the server never noticed. */
    silentUndetected: number;
    /** Departures of encoders that had a job running or queued (the ones that test re-queueing). */
    departuresWithWork: number;
    /** Unfinished shards those departures left behind (each one a sample of reassignMs once reassigned). */
    shardsLeftUnfinished: number;
    /** From an encoder's departure to each of its unfinished shards appearing in another encoder's job. */
    reassignMs: Dist;
    reassignByKind: Partial<Record<LeaveKind, Dist>>;
    /** Unfinished shards of departed encoders never handed to anyone. */
    neverReassigned: number;
    /** Jobs that carried a variant already accepted (re-encodes of lost shards, or duplicates). */
    reencodeJobs: number;
    /** Variants assigned more than once with no departure or cancel in between: wasted work. */
    duplicateAssignments: number;
    jobsCancelled: number;
  };
  load: {
    viewerRequests: number;
    replicationCopies: number;
    /**
     * Load spread over the holders of each watched content: for every encoder
     * that held some shard of the content for >= 5 s of the viewing phase, the
     * viewer requests for that content it served, per second it held some of
     * it; busiest and mean over those holders. Contents in publishing order
     * (the first is the most watched).
     */
    byContent: ContentLoad[];
    /** The most requested content's figures (byContent's entry with the most requests). */
    meanRps: number;
    busiestRps: number;
    busiestToMean: number;
    /** Most requests one encoder served within one wall second. */
    peakSecond: number;
    /** Encoders that served nothing while holding something. */
    idleHolders: number;
  };
  viewers: {
    fromPeers: number;
    fromCache: number;
    /** Shards skipped because they were not encoded yet / encoded but nobody could provide them. */
    missesUnencoded: number;
    missesNoHolder: number;
    /** A listed holder that the simulation knows had left or gone silent. */
    staleHolderPicks: number;
    stallSeconds: number;
    startupMs: Dist;
    locateRttMs: Dist;
    locatesUnanswered: number;
    watchesFinished: number;
  };
  encoders: { joined: number; peakLive: number; liveAtEnd: number; acceptRttMs: Dist; shardsReported: number; rejected: number };
  server: {
    pid: number;
    /** CPU seconds (user+system) from the first encoder joining to the end, and during start-up and publishing. */
    cpuSeconds: number;
    cpuSecondsStartup: number;
    /** Highest one-second CPU use, percent of one core. */
    peakCpuPercent: number;
    meanCpuPercent: number;
    rssPeakMB: number;
    /** Kernel's high-water mark of the resident set (VmHWM). */
    hwmMB: number;
    messagesIn: number;
    messagesOut: number;
    messagesPerSecond: number;
    byType: Record<string, number>;
    healthOk: boolean;
    exit: string | null;
    errorLines: string[];
    counters: Record<string, number>;
  };
  protocol: {
    errors: Record<string, number>;
    errorExamples: string[];
    invalidServerMessages: number;
    invalidExamples: string[];
    replicates: number;
    /** Most replicate orders one encoder received within one wall second (each is answered by one message). */
    replicatesPeakPerSecond: number;
    replicateFailed: number;
    releases: number;
    releasesOfUnheld: number;
    /** At the end: (peer, variant) pairs the server lists that the simulation says are not held, and the reverse. */
    serverOnlyHolders: number;
    simOnlyHolders: number;
    mismatchExamples: string[];
    unexpectedCloses: Record<string, number>;
  };
  sim: { cpuSeconds: number; loopDelayP99Ms: number; loopDelayMaxMs: number };
}

// ---------------------------------------------------------------- small helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));


export function dist(xs: number[]): Dist {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]! : NaN);
  return { n: s.length, median: q(0.5), p95: q(0.95), max: s.length ? s[s.length - 1]! : NaN };
}

const keyStr = (contentId: string, rendition: string, index: number) => `${contentId}/${rendition}/${index}`;

/** Every simulated encoder makes the same bytes for a shard, so the same hash. */
const shaCache = new Map<string, string>();
export function simSha(key: string): string {
  let h = shaCache.get(key);
  if (!h) shaCache.set(key, (h = createHash('sha256').update(key).digest('hex')));
  return h;
}

function bump(rec: Record<string, number>, k: string, n = 1): void {
  rec[k] = (rec[k] ?? 0) + n;
}

function pushExample(list: string[], s: string, max = 8): void {
  if (list.length < max) list.push(s.slice(0, 300));
}

// ---------------------------------------------------------------- the server child

interface ServerProc {
  child: ChildProcess;
  url: string;
  dataDir: string;
  errorLines: string[];
  exit: string | null;
  tail: string[];
}

const SIM_ADMIN_TOKEN = 'churn-sim-admin-token';

async function startServerProcess(o: ChurnOptions): Promise<ServerProc> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-churn-'));
  const args = [
    ...o.serverNodeArgs,
    '--import',
    'tsx',
    path.join(ROOT, 'signaling/main.ts'),
    '--no-build',
    '--port',
    '0',
    '--host',
    '127.0.0.1',
    '--data-dir',
    dataDir,
    '--heartbeat-ms',
    String(o.heartbeatMs),
    '--heartbeat-timeout-ms',
    String(o.heartbeatTimeoutMs),
    // The simulation has no bytes to put in the cache, so the server should not count on it.
    '--cache-enabled',
    'false',
    // Nor bytes to check: the simulator-only knob that accepts shards on the encoder's word.
    '--verify-shard-bytes',
    'false',
    // No cross-checks either: they re-assign accepted shards on purpose, which this simulation counts as duplicates.
    '--verify-sample-rate',
    '0',
    '--verify-new-encoder-jobs',
    '0',
    // Every simulated tab connects from this one address, and publishes with the admin token.
    '--max-connections-per-ip',
    '0',
    '--admin-token',
    SIM_ADMIN_TOKEN,
    ...o.serverArgs,
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...o.serverEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: ServerProc = { child, url: '', dataDir, errorLines: [], exit: null, tail: [] };
  const onLine = (line: string, stream: 'out' | 'err') => {
    proc.tail.push(line);
    if (proc.tail.length > 50) proc.tail.shift();
    // The server logs a caught handler failure and goes on; each one is a bug the run found.
    if (stream === 'err' || /failed:|Error|internal/.test(line)) pushExample(proc.errorLines, line, 30);
  };
  for (const [stream, name] of [
    [child.stdout!, 'out'],
    [child.stderr!, 'err'],
  ] as const) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i), name);
        buf = buf.slice(i + 1);
      }
    });
  }
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      proc.exit = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    }),
  );
  const deadline = Date.now() + 60_000;
  while (!proc.url) {
    const m = proc.tail.map((l) => /shardcast is running: (http:\/\/\S+)/.exec(l)).find((x) => x);
    if (m) proc.url = m[1]!.replace('localhost', '127.0.0.1');
    else if (proc.exit !== null) {
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the server exited (${proc.exit}) before listening:\n${proc.tail.join('\n')}`);
    }
    else if (Date.now() > deadline) {
      child.kill('SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the server did not start in 60 s:\n${proc.tail.join('\n')}`);
    }
    else await Promise.race([sleep(50), exited]);
  }
  return proc;
}

async function stopServerProcess(s: ServerProc): Promise<void> {
  if (s.exit === null) {
    const gone = new Promise<void>((r) => s.child.once('exit', () => r()));
    s.child.kill('SIGTERM');
    await Promise.race([gone, sleep(5000)]);
    if (s.exit === null) {
      s.child.kill('SIGKILL');
      await gone;
    }
  }
}

/** Clock ticks per second in /proc/<pid>/stat: USER_HZ, 100 on every Linux architecture Node runs on. */
const CLK_TCK = 100;

/** utime+stime of a process in seconds, and its resident set and high-water mark in bytes. */
function procStats(pid: number): { cpu: number; rss: number; hwm: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { cpu, rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- the simulation

interface SimContent {
  id: string;
  fixture: string;
  map: ShardMap;
  starts: number[];
  duration: number;
  /** Video renditions, best first. */
  video: string[];
  audio: string | undefined;
  weight: number;
}

type Msg<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

/** What one WebSocket client shares: counting, parsing and sending. */
abstract class SimClient {
  ws: WebSocket | undefined;
  peerId = '';
  resume = '';
  welcomed = false;
  protected heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(protected readonly sim: Churn) {}

  connect(hello: Omit<Extract<ClientMessage, { type: 'hello' }>, 'type' | 'protocol'>): void {
    const ws = new WebSocket(`${this.sim.url.replace(/^http/, 'ws')}/ws`, { perMessageDeflate: false });
    this.ws = ws;
    ws.on('open', () => this.send({ type: 'hello', protocol: 1, ...hello }));
    ws.on('message', (data) => {
      const raw = (data as Buffer).toString('utf8');
      let msg: ServerMessage;
      if (this.sim.o.validate) {
        const r = parseServerMessage(raw);
        if (!r.ok) {
          this.sim.r.protocol.invalidServerMessages++;
          pushExample(this.sim.r.protocol.invalidExamples, `${r.message}: ${raw}`);
          return;
        }
        msg = r.msg;
      } else {
        msg = JSON.parse(raw) as ServerMessage;
      }
      this.sim.r.server.messagesOut++;
      bump(this.sim.r.server.byType, `out:${msg.type}`);
      if (msg.type === 'welcome') {
        this.peerId = msg.peerId;
        this.resume = msg.resume;
        this.welcomed = true;
      } else if (msg.type === 'error') {
        bump(this.sim.r.protocol.errors, `${msg.ref ?? '?'}:${msg.code}`);
        pushExample(this.sim.r.protocol.errorExamples, `${this.constructor.name} ${this.peerId}: ${msg.ref ?? '?'}: ${msg.code}: ${msg.message}${this.explain(msg.message)}`);
      }
      this.onMessage(msg);
    });
    ws.on('close', (code, reason) => {
      clearInterval(this.heartbeatTimer);
      this.onClose(code, reason.toString());
    });
    ws.on('error', () => {});
  }

  send(msg: ClientMessage): void {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(msg));
    this.lastSent = Date.now();
    this.sim.r.server.messagesIn++;
    bump(this.sim.r.server.byType, `in:${msg.type}`);
  }

  protected startHeartbeat(periodMs: number, body: () => Omit<Extract<ClientMessage, { type: 'heartbeat' }>, 'type'>): void {
    clearInterval(this.heartbeatTimer);
    // Tabs join at random moments: spread the first beat so they do not tick in lockstep.
    const first = setTimeout(() => {
      this.beat(body);
      this.heartbeatTimer = setInterval(() => this.beat(body), periodMs);
    }, this.sim.rand() * periodMs);
    this.heartbeatTimer = first;
  }

  private beat(body: () => Omit<Extract<ClientMessage, { type: 'heartbeat' }>, 'type'>): void {
    this.send({ type: 'heartbeat', ...body() });
  }

  /** Any message refreshes the server's view of a peer, so its timeout runs from the last one sent. */
  lastSent = 0;

  /** Context the simulation knows for an error reply. */
  explain(_message: string): string {
    return '';
  }

  abstract onMessage(msg: ServerMessage): void;
  abstract onClose(code: number, reason: string): void;
}

interface Holding {
  sha: string;
  size: number;
  /** How the tab came to hold it, for the report's examples. */
  via: 'encode' | 'replica' | 'rejoin';
}

interface RunningJob {
  job: Job;
  cancelled: boolean;
  timers: NodeJS.Timeout[];
  /** Ends the simulated encode early (cancel, departure). */
  wake: (() => void) | undefined;
  verdicts: Map<string, (ok: boolean) => void>;
  accepted: Set<number>;
}

class SimEncoder extends SimClient {
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

  constructor(sim: Churn, speed?: number, private readonly rejoin?: { peerId: string; resume: string; holdings: Map<string, Holding> }) {
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

function abort(run: RunningJob): void {
  run.cancelled = true;
  for (const t of run.timers) clearTimeout(t);
  run.wake?.();
  for (const v of [...run.verdicts.values()]) v(false);
}

function splitKey(k: string): [string, string, number] {
  const a = k.split('/');
  return [a[0]!, a[1]!, Number(a[2])];
}

/** Bytes a real encoder would make for the shard: its rendition's bitrate over its duration. */
function shardSize(job: Job, s: Job['shards'][number]): number {
  const bps = job.video?.bitrate ?? job.audio?.bitrate ?? 100_000;
  return Math.max(200, Math.round((bps * s.duration) / 8));
}

class SimViewer extends SimClient {
  content!: SimContent;
  pos = 0;
  private fetched = new Set<string>();
  private holders = new Map<string, HolderEntry>();
  private lastLocate = 0;
  private pendingLocate: { id: number; at: number } | undefined;
  private stalledSince: number | undefined;
  private started = false;
  private watchStart = 0;
  private lastTick = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private nextRequest = 1;
  /** Open peer connections of this watch, by peer id: when last used (PeerManager's LRU limit). */
  private readonly conns = new Map<string, number>();

  start(): void {
    this.pick();
    this.connect({ role: 'viewer' });
  }

  private pick(): void {
    this.content = this.sim.pickContent();
    this.pos = 0;
    this.fetched.clear();
    this.holders.clear();
    // A new watch is a new page: its connections start from none.
    this.conns.clear();
    this.started = false;
    this.stalledSince = undefined;
    this.watchStart = Date.now();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === 'welcome') {
      this.startHeartbeat(msg.heartbeatMs, () => ({}));
      this.lastTick = Date.now();
      this.tickTimer = setInterval(() => this.tick(), 250);
    } else if (msg.type === 'holders') {
      if (this.pendingLocate?.id === msg.requestId) {
        this.sim.locateRtt.push(Date.now() - this.pendingLocate.at);
        this.pendingLocate = undefined;
      }
      if (msg.contentId !== this.content.id) return;
      for (const e of msg.shards) this.holders.set(`${e.rendition}/${e.index}`, e);
      this.fetchWindow();
    }
  }

  private stopped = false;

  onClose(code: number, reason: string): void {
    clearInterval(this.tickTimer);
    if (!this.stopped) bump(this.sim.r.protocol.unexpectedCloses, `viewer ${code} ${reason}`);
  }

  /** Stops watching but stays connected, heartbeating like an open tab. */
  pause(): void {
    clearInterval(this.tickTimer);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.tickTimer);
    clearInterval(this.heartbeatTimer);
    this.ws?.terminate();
  }

  private shardAt(t: number): number {
    const s = this.content.starts;
    let lo = 0;
    let hi = s.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (s[mid]! <= t + 1e-9) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private tracks(): ('video' | 'audio')[] {
    return this.content.audio ? ['video', 'audio'] : ['video'];
  }

  private tick(): void {
    const now = Date.now();
    const dt = now - this.lastTick;
    this.lastTick = now;
    const o = this.sim.o;
    const c = this.content;
    const cur = this.shardAt(this.pos);
    if (!this.pendingLocate && now - this.lastLocate >= o.locateEveryMs) this.locate(cur);
    else if (this.pendingLocate && now - this.pendingLocate.at > 10_000) {
      this.sim.r.viewers.locatesUnanswered++;
      this.pendingLocate = undefined;
    }
    this.fetchWindow();
    // Play: the shard under the playhead must be here in every track, else stall, and skip after a grace.
    const missing = this.tracks().filter((t) => !this.fetched.has(`${t}/${cur}`));
    if (missing.length === 0) {
      if (!this.started) {
        this.started = true;
        this.sim.startup.push(now - this.watchStart);
      }
      if (this.stalledSince !== undefined) this.sim.r.viewers.stallSeconds += (now - this.stalledSince) / 1000;
      this.stalledSince = undefined;
      this.pos += (dt / 1000) * o.timeScale;
      if (this.pos >= c.duration - 1e-6) {
        this.sim.r.viewers.watchesFinished++;
        this.pick();
        this.locate(0);
      }
      return;
    }
    this.stalledSince ??= now;
    const grace = this.started ? o.missingGraceMs : o.startWaitMs;
    if (now - this.stalledSince < grace) return;
    for (const t of missing) {
      const renditions = t === 'video' ? c.video : [c.audio!];
      const encoded = renditions.some((r) => this.holders.get(`${r}/${cur}`)?.sha256 !== undefined);
      if (encoded) this.sim.r.viewers.missesNoHolder++;
      else this.sim.r.viewers.missesUnencoded++;
      this.fetched.add(`${t}/${cur}`);
    }
  }

  private locate(from: number): void {
    const id = this.nextRequest++;
    this.lastLocate = Date.now();
    this.pendingLocate = { id, at: this.lastLocate };
    const count = Math.ceil(this.sim.o.lookAheadSeconds / this.content.map.shardDuration) + 4;
    this.send({ type: 'locate', requestId: id, contentId: this.content.id, from, count });
  }

  /** Fetches every shard of the look-ahead window that someone can provide, like the watch page. */
  private fetchWindow(): void {
    const c = this.content;
    const first = this.shardAt(this.pos);
    const last = this.shardAt(this.pos + this.sim.o.lookAheadSeconds);
    for (let i = first; i <= last; i++) {
      for (const t of this.tracks()) {
        const fk = `${t}/${i}`;
        if (this.fetched.has(fk)) continue;
        const renditions = t === 'video' ? c.video : [c.audio!];
        let got = false;
        let cached = false;
        for (const r of renditions) {
          const e = this.holders.get(`${r}/${i}`);
          if (!e) continue;
          cached ||= e.cached;
          const k = keyStr(c.id, r, i);
          // The watch page's own order (Viewer.fromPeers), the same expression with the seeded generator: the
          // server's list (least busy first) shuffled by a random comparator, then connected peers first.
          const order = [...e.peers].sort(() => this.sim.rand() - 0.5).sort((a, b) => Number(this.conns.has(b)) - Number(this.conns.has(a)));
          for (const p of order) {
            const enc = this.sim.byPeerId.get(p);
            if (enc && enc.live && enc.holdings.has(k)) {
              enc.serve('view', c.id);
              this.usePeer(p);
              got = true;
              break;
            } else {
              // A peer that left takes its connection with it.
              if (!enc?.live) this.conns.delete(p);
              // The server listed a holder that left, went silent or released the shard: a wasted connection
              // attempt, which a tab would not repeat until the next locate.
              this.sim.r.viewers.staleHolderPicks++;
              e.peers = e.peers.filter((x) => x !== p);
            }
          }
          if (got) break;
        }
        if (got) this.sim.r.viewers.fromPeers++;
        else if (cached) this.sim.r.viewers.fromCache++;
        else continue;
        this.fetched.add(fk);
      }
    }
  }

  /** Opens (or reuses) a connection to `peerId`, closing the least recently used beyond maxPeers. */
  private usePeer(peerId: string): void {
    this.conns.delete(peerId);
    this.conns.set(peerId, Date.now());
    // Map order is insertion order and every use re-inserts: the first entries are the least recently used.
    while (this.conns.size > this.sim.o.maxPeers) this.conns.delete(this.conns.keys().next().value!);
  }
}

class Churn {
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
        if (prev && prev !== e && prev.live && prevJob && !prev.current!.cancelled && prevJob.shards.some((x) => keyStr(job.contentId, job.rendition, x.index) === k)) {
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
      setTimeout(() => {
        if (!this.stopping) this.addEncoder({ peerId, resume, holdings, speed: e.speed });
      }, 500 + this.rand() * 2000).unref();
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
      const video = map.renditions.filter((r) => 'video' in r).sort((a, b) => (('video' in b ? b.video.bitrate : 0) - ('video' in a ? a.video.bitrate : 0)));
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

  finish(maps: Map<string, ShardMap>, serverHolders: Map<string, HolderEntry>): void {
    const r = this.r;
    const now = Date.now();
    // Re-queue figures.
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
    // Lost shards and readiness.
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
              pushExample(r.protocol.mismatchExamples, `${e.peerId} holds ${k} (via ${e.holdings.get(k)?.via}) but the server does not list it; status ${st.status}`);
            }
          }
        }
      }
      r.contents.push({ id: c.id, fixture: c.fixture, shards: map.shards.length, variants, readyAtEnd: ready });
      r.lost.notReadyAtEnd += variants - ready;
    }
    r.lost.orphanedDuringRun = this.orphaned.size;
    r.lost.recovered = [...this.orphaned].filter((k) => this.liveHolders.has(k)).length;
    // Holder load over the viewing phase, per content, over the holders of that content.
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
      r.load.byContent.push({ contentId: c.id, fixture: c.fixture, requests, holders: rates.length, meanRps: mean, busiestRps: busiest, busiestToMean: mean > 0 ? busiest / mean : 0 });
    }
    const top = [...r.load.byContent].sort((a, b) => b.requests - a.requests)[0];
    r.load.viewerRequests = this.encoders.reduce((a, e) => a + e.served, 0);
    r.load.meanRps = top?.meanRps ?? 0;
    r.load.busiestRps = top?.busiestRps ?? 0;
    r.load.busiestToMean = top?.busiestToMean ?? 0;
    r.load.peakSecond = Math.max(0, ...this.encoders.flatMap((e) => [...e.perSecond.values()]));
    r.viewers.startupMs = dist(this.startup);
    r.viewers.locateRttMs = dist(this.locateRtt);
    r.encoders.acceptRttMs = dist(this.acceptRtt);
    r.encoders.liveAtEnd = this.liveEncoders().length;
  }
}

// ---------------------------------------------------------------- runChurn

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

    // Server samples once a second: CPU use per interval and resident memory.
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

    // Completion: the first moment every variant of every content is ready.
    let polling = false;
    timers.push(
      setInterval(() => {
        if (polling || r.completionSeconds !== null) return;
        polling = true;
        fetch(`${sim.url}/api/contents`)
          .then((res) => res.json() as Promise<{ contents: { status: string; ready: number; total: number }[] }>)
          .then((j) => {
            if (r.completionSeconds === null && sim.uploadsPending === 0 && j.contents.length === sim.contents.length && j.contents.every((c) => c.status === 'ready')) {
              r.completionSeconds = (Date.now() - sim.t0) / 1000;
              sim.log(`all contents ready`);
            }
          })
          .catch(() => {})
          .finally(() => (polling = false));
      }, 250),
    );

    loop.enable();
    sim.t0 = Date.now();
    sim.viewStart = sim.t0 + o.viewerStart * 1000;
    sim.viewEnd = sim.t0 + o.seconds * 1000;
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

    // Uploads during the run, one at a time, so the pool always has work arriving.
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

    // Churn: departures and joins as Poisson processes, and one batch.
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

    // Final view: the maps, the server's holders for every variant, its counters and health.
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

/** One viewer asks for every variant of every content: the server's availability index at the end. */
async function locateAll(sim: Churn, maps: Map<string, ShardMap>): Promise<Map<string, HolderEntry>> {
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

// ---------------------------------------------------------------- the table

export function formatReport(r: ChurnReport): string {
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
  const d = (x: Dist, unit = 'ms') => (x.n ? `median ${f(x.median, 0)} / p95 ${f(x.p95, 0)} / max ${f(x.max, 0)} ${unit} (n=${x.n})` : 'none');
  const o = r.options;
  const rows: [string, string][] = [
    ['scale', `${o.encoders} encoders, ${o.viewers} viewers, ${o.contents} contents${o.publishEverySeconds > 0 ? ` (+1 every ${o.publishEverySeconds} s)` : ''}; ${o.seconds} s run + up to ${o.settleSeconds} s settle; time scale ${o.timeScale}`],
    ['churn', `${f(o.churnPerMin * 100, 0)}%/min (silent ${f(o.silentFraction * 100, 0)}%, rejoin ${f(o.rejoinFraction * 100, 0)}%), batch ${f(o.batchFraction * 100, 0)}% at ${o.batchAt} s; heartbeat ${o.heartbeatMs}/${o.heartbeatTimeoutMs} ms`],
    ['contents', `${r.contents.length}, ${r.contents.filter((c) => c.readyAtEnd === c.variants).length} complete; not complete: ${r.contents.filter((c) => c.readyAtEnd < c.variants).map((c) => `${c.fixture} ${c.readyAtEnd}/${c.variants}`).join(', ') || 'none'}`],
    ['completion', r.completionSeconds === null ? 'NOT COMPLETE' : `${f(r.completionSeconds)} s`],
    ['shards lost at end', `${r.lost.atEnd} (orphaned during run ${r.lost.orphanedDuringRun}, recovered ${r.lost.recovered}; not ready at end ${r.lost.notReadyAtEnd})${r.lost.examples.length ? ` e.g. ${r.lost.examples.slice(0, 3).join(', ')}` : ''}`],
    ['departures', Object.entries(r.requeue.departures).map(([k, v]) => `${k} ${v}`).join(', ')],
    ['silent tab noticed after', `${d(r.requeue.silentDetectMs)}; never noticed ${r.requeue.silentUndetected}`],
    ['departures with work', `${r.requeue.departuresWithWork} of ${Object.values(r.requeue.departures).reduce((a, b) => a + b, 0)} left ${r.requeue.shardsLeftUnfinished} unfinished shards`],
    ['re-queue delay (loss to reassigned)', d(r.requeue.reassignMs)],
    ...Object.entries(r.requeue.reassignByKind).map(([k, v]) => [`  after ${k}`, d(v)] as [string, string]),
    ['never reassigned', `${r.requeue.neverReassigned}; re-encode jobs ${r.requeue.reencodeJobs}; duplicate assignments ${r.requeue.duplicateAssignments}; cancels ${r.requeue.jobsCancelled}`],
    ['holder load', `most requested content: mean ${f(r.load.meanRps, 2)} req/s per holder, busiest ${f(r.load.busiestRps, 2)} req/s (x${f(r.load.busiestToMean, 1)} mean), peak ${r.load.peakSecond} in one second; ${r.load.viewerRequests} requests, ${r.load.replicationCopies} replica copies, ${r.load.idleHolders} idle holders`],
    // The most watched few (the first contents, by popularity); the rest are a long tail.
    ...r.load.byContent.slice(0, 6).map((c, i) => [`  content ${i} (${c.fixture})`, `${c.requests} requests over ${c.holders} holders: mean ${f(c.meanRps, 2)}, busiest ${f(c.busiestRps, 2)} req/s (x${f(c.busiestToMean, 1)})`] as [string, string]),
    ['viewer shards', `${r.viewers.fromPeers} from peers, ${r.viewers.fromCache} from cache; missed ${r.viewers.missesUnencoded} not yet encoded + ${r.viewers.missesNoHolder} with no holder; ${r.viewers.staleHolderPicks} stale holder picks`],
    ['viewer playback', `stalled ${f(r.viewers.stallSeconds)} s in all; start ${d(r.viewers.startupMs)}; ${r.viewers.watchesFinished} watches finished`],
    ['locate round trip', `${d(r.viewers.locateRttMs)}; unanswered ${r.viewers.locatesUnanswered}`],
    ['shard-ready to accepted', d(r.encoders.acceptRttMs)],
    ['encoders', `${r.encoders.joined} joined, peak ${r.encoders.peakLive} live, ${r.encoders.liveAtEnd} at end; ${r.encoders.shardsReported} shards reported, ${r.encoders.rejected} rejected`],
    ['server CPU', `${f(r.server.cpuSeconds, 2)} s over the run (mean ${f(r.server.meanCpuPercent, 0)}%, peak ${f(r.server.peakCpuPercent, 0)}% of a core); start-up + publish ${f(r.server.cpuSecondsStartup, 2)} s`],
    ['server memory', `peak RSS ${f(r.server.rssPeakMB, 0)} MB, VmHWM ${f(r.server.hwmMB, 0)} MB`],
    ['messages', `${r.server.messagesIn} in, ${r.server.messagesOut} out, ${f(r.server.messagesPerSecond, 0)}/s`],
    ['server counters', JSON.stringify(r.server.counters)],
    ['server health', `${r.server.healthOk ? 'ok' : 'NOT OK'}; exit ${r.server.exit ?? '-'}; ${r.server.errorLines.length} error lines`],
    ['protocol', `errors ${JSON.stringify(r.protocol.errors)}; invalid server messages ${r.protocol.invalidServerMessages}; replicate ${r.protocol.replicates} (failed ${r.protocol.replicateFailed}, at most ${r.protocol.replicatesPeakPerSecond} to one encoder in a second), release ${r.protocol.releases} (unheld ${r.protocol.releasesOfUnheld})`],
    ['holder index vs truth', `server-only ${r.protocol.serverOnlyHolders}, sim-only ${r.protocol.simOnlyHolders}; unexpected closes ${JSON.stringify(r.protocol.unexpectedCloses)}`],
    ['simulator', `CPU ${f(r.sim.cpuSeconds, 1)} s, event-loop delay p99 ${f(r.sim.loopDelayP99Ms, 0)} ms, max ${f(r.sim.loopDelayMaxMs, 0)} ms; wall ${f(r.wallSeconds, 0)} s`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  const extra = [
    ...r.protocol.errorExamples.map((x) => `  error: ${x}`),
    ...r.protocol.invalidExamples.map((x) => `  invalid: ${x}`),
    ...r.protocol.mismatchExamples.map((x) => `  mismatch: ${x}`),
    ...r.server.errorLines.slice(0, 10).map((x) => `  server: ${x}`),
  ];
  return [...lines, ...extra].join('\n');
}

// ---------------------------------------------------------------- CLI

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const { opts, json } = parseChurnArgs(process.argv.slice(2), DEFAULT_CHURN_OPTIONS);
  runChurn({ log: (l) => console.error(l), ...opts }).then(
    (r) => {
      console.log(json ? JSON.stringify(r, null, 2) : formatReport(r));
      process.exit(0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
