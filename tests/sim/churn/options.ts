/**
 * The churn simulation's contract: the options a run takes (ChurnOptions and
 * their defaults) and the shape of the report it resolves to (ChurnReport).
 * Types and defaults only; no behaviour.
 */
import type { FixtureName } from '../../harness/fixtures.ts';

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
