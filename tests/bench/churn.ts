import { formatReport, runChurn } from '../sim/churn.ts';
import type { Bench } from './common.ts';

/**
 * The pool manager at scale, no browsers: the real server process driven by
 * 200 simulated encoders and 500 simulated viewers for 90 s (tests/sim/churn.ts)
 * over 4 contents at the start and one more uploaded every 2 s for the first
 * 67 s, so work keeps arriving and departures land on running jobs. Encoders
 * run 0.3-1.5x real time (ffmpeg.wasm: ~0.7x at 720p, ~1.3x at 360p, bench a).
 * 20%/min random departures (half of them silent), reloads, joins, and a
 * quarter of the pool leaving at once at 45 s. Heartbeats at the server's
 * defaults. The full table goes to the console.
 */
export const churn: Bench = async (run) => {
  const r = await runChurn({
    encoders: 200,
    viewers: 500,
    contents: 4,
    publishEverySeconds: 2,
    speedMin: 0.3,
    speedMax: 1.5,
    seconds: 90,
    settleSeconds: 20,
    viewerRamp: 20,
    batchAt: 45,
    heartbeatMs: 2000,
    heartbeatTimeoutMs: 6000,
    seed: run + 1,
  });
  console.log(formatReport(r));
  const departures = Object.values(r.requeue.departures).reduce((a, b) => a + b, 0);
  const kicked = `${r.requeue.departures.kicked} live encoders dropped by the server`;
  const withWork = `${r.requeue.reassignMs.n} shards from ${r.requeue.departuresWithWork} departures with work in flight; ${kicked}`;
  const dist = (d: { n: number; median: number; p95: number }, k: 'median' | 'p95') => (d.n > 0 ? d[k] : null);
  const top = [...r.load.byContent].sort((a, b) => b.requests - a.requests)[0];
  const spread = top
    ? `content ${r.load.byContent.indexOf(top)} (${top.fixture}): ${top.requests} requests over ${top.holders} holders; the first 4 contents x${r.load.byContent
        .slice(0, 4)
        .map((c) => c.busiestToMean.toFixed(1))
        .join(', x')}`
    : 'no content was watched';
  return [
    {
      metric: 'completion: every variant of every content ready',
      unit: 's',
      value: r.completionSeconds,
      note:
        r.completionSeconds === null
          ? 'never complete'
          : `${r.contents.length} contents, the last uploaded at ${Math.floor((r.options.seconds * 0.75) / r.options.publishEverySeconds) * r.options.publishEverySeconds} s`,
    },
    {
      metric: 'shards lost at the end',
      unit: 'shards',
      value: r.lost.atEnd,
      note: `${r.lost.orphanedDuringRun} orphaned during the run, ${r.lost.recovered} recovered`,
    },
    {
      metric: 'departures with a job running or queued',
      unit: 'departures',
      value: r.requeue.departuresWithWork,
      note: `of ${departures}; they left ${r.requeue.shardsLeftUnfinished} unfinished shards`,
    },
    { metric: 're-queue delay (departure with work to reassigned), median', unit: 'ms', value: dist(r.requeue.reassignMs, 'median'), note: withWork },
    { metric: 're-queue delay (departure with work to reassigned), p95', unit: 'ms', value: dist(r.requeue.reassignMs, 'p95'), note: withWork },
    { metric: 'silent tab noticed after (timeout 6000 ms), p95', unit: 'ms', value: dist(r.requeue.silentDetectMs, 'p95') },
    {
      metric: 'busiest holder load, most requested content',
      unit: 'req/s',
      value: top ? top.busiestRps : null,
      note: top ? `mean ${top.meanRps.toFixed(2)} req/s per holder of that content` : undefined,
    },
    { metric: 'busiest holder / mean holder of the content watched', unit: 'ratio', value: top && top.meanRps > 0 ? top.busiestToMean : null, note: spread },
    {
      metric: 'viewer shards missed (skipped)',
      unit: 'shards',
      value: r.viewers.missesUnencoded + r.viewers.missesNoHolder,
      note: `of ${r.viewers.fromPeers + r.viewers.fromCache} fetched`,
    },
    { metric: 'locate round trip, p95', unit: 'ms', value: dist(r.viewers.locateRttMs, 'p95') },
    { metric: 'server CPU over the run', unit: 's', value: r.server.cpuSeconds, note: `peak ${r.server.peakCpuPercent.toFixed(0)}% of a core in one second` },
    { metric: 'server peak RSS', unit: 'MB', value: r.server.rssPeakMB },
    { metric: 'WebSocket messages through the server', unit: 'msg/s', value: r.server.messagesPerSecond },
  ];
};
