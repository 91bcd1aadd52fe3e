/**
 * The printed table of a ChurnReport (formatReport): one labelled row per
 * figure, then examples of errors and server error lines.
 */
import type { ChurnReport, Dist } from './options.ts';

export function formatReport(r: ChurnReport): string {
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
  const d = (x: Dist, unit = 'ms') => (x.n ? `median ${f(x.median, 0)} / p95 ${f(x.p95, 0)} / max ${f(x.max, 0)} ${unit} (n=${x.n})` : 'none');
  const o = r.options;
  const rows: [string, string][] = [
    [
      'scale',
      `${o.encoders} encoders, ${o.viewers} viewers, ${o.contents} contents${o.publishEverySeconds > 0 ? ` (+1 every ${o.publishEverySeconds} s)` : ''}; ${o.seconds} s run + up to ${o.settleSeconds} s settle; time scale ${o.timeScale}`,
    ],
    [
      'churn',
      `${f(o.churnPerMin * 100, 0)}%/min (silent ${f(o.silentFraction * 100, 0)}%, rejoin ${f(o.rejoinFraction * 100, 0)}%), batch ${f(o.batchFraction * 100, 0)}% at ${o.batchAt} s; heartbeat ${o.heartbeatMs}/${o.heartbeatTimeoutMs} ms`,
    ],
    [
      'contents',
      `${r.contents.length}, ${r.contents.filter((c) => c.readyAtEnd === c.variants).length} complete; not complete: ${
        r.contents
          .filter((c) => c.readyAtEnd < c.variants)
          .map((c) => `${c.fixture} ${c.readyAtEnd}/${c.variants}`)
          .join(', ') || 'none'
      }`,
    ],
    ['completion', r.completionSeconds === null ? 'NOT COMPLETE' : `${f(r.completionSeconds)} s`],
    [
      'shards lost at end',
      `${r.lost.atEnd} (orphaned during run ${r.lost.orphanedDuringRun}, recovered ${r.lost.recovered}; not ready at end ${r.lost.notReadyAtEnd})${r.lost.examples.length ? ` e.g. ${r.lost.examples.slice(0, 3).join(', ')}` : ''}`,
    ],
    [
      'departures',
      Object.entries(r.requeue.departures)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ],
    ['silent tab noticed after', `${d(r.requeue.silentDetectMs)}; never noticed ${r.requeue.silentUndetected}`],
    [
      'departures with work',
      `${r.requeue.departuresWithWork} of ${Object.values(r.requeue.departures).reduce((a, b) => a + b, 0)} left ${r.requeue.shardsLeftUnfinished} unfinished shards`,
    ],
    ['re-queue delay (loss to reassigned)', d(r.requeue.reassignMs)],
    ...Object.entries(r.requeue.reassignByKind).map(([k, v]) => [`  after ${k}`, d(v)] as [string, string]),
    [
      'never reassigned',
      `${r.requeue.neverReassigned}; re-encode jobs ${r.requeue.reencodeJobs}; duplicate assignments ${r.requeue.duplicateAssignments}; cancels ${r.requeue.jobsCancelled}`,
    ],
    [
      'holder load',
      `most requested content: mean ${f(r.load.meanRps, 2)} req/s per holder, busiest ${f(r.load.busiestRps, 2)} req/s (x${f(r.load.busiestToMean, 1)} mean), peak ${r.load.peakSecond} in one second; ${r.load.viewerRequests} requests, ${r.load.replicationCopies} replica copies, ${r.load.idleHolders} idle holders`,
    ],
    // The most watched few (the first contents, by popularity); the rest are a long tail.
    ...r.load.byContent
      .slice(0, 6)
      .map(
        (c, i) =>
          [
            `  content ${i} (${c.fixture})`,
            `${c.requests} requests over ${c.holders} holders: mean ${f(c.meanRps, 2)}, busiest ${f(c.busiestRps, 2)} req/s (x${f(c.busiestToMean, 1)})`,
          ] as [string, string],
      ),
    [
      'viewer shards',
      `${r.viewers.fromPeers} from peers, ${r.viewers.fromCache} from cache; missed ${r.viewers.missesUnencoded} not yet encoded + ${r.viewers.missesNoHolder} with no holder; ${r.viewers.staleHolderPicks} stale holder picks`,
    ],
    ['viewer playback', `stalled ${f(r.viewers.stallSeconds)} s in all; start ${d(r.viewers.startupMs)}; ${r.viewers.watchesFinished} watches finished`],
    ['locate round trip', `${d(r.viewers.locateRttMs)}; unanswered ${r.viewers.locatesUnanswered}`],
    ['shard-ready to accepted', d(r.encoders.acceptRttMs)],
    [
      'encoders',
      `${r.encoders.joined} joined, peak ${r.encoders.peakLive} live, ${r.encoders.liveAtEnd} at end; ${r.encoders.shardsReported} shards reported, ${r.encoders.rejected} rejected`,
    ],
    [
      'server CPU',
      `${f(r.server.cpuSeconds, 2)} s over the run (mean ${f(r.server.meanCpuPercent, 0)}%, peak ${f(r.server.peakCpuPercent, 0)}% of a core); start-up + publish ${f(r.server.cpuSecondsStartup, 2)} s`,
    ],
    ['server memory', `peak RSS ${f(r.server.rssPeakMB, 0)} MB, VmHWM ${f(r.server.hwmMB, 0)} MB`],
    ['messages', `${r.server.messagesIn} in, ${r.server.messagesOut} out, ${f(r.server.messagesPerSecond, 0)}/s`],
    ['server counters', JSON.stringify(r.server.counters)],
    ['server health', `${r.server.healthOk ? 'ok' : 'NOT OK'}; exit ${r.server.exit ?? '-'}; ${r.server.errorLines.length} error lines`],
    [
      'protocol',
      `errors ${JSON.stringify(r.protocol.errors)}; invalid server messages ${r.protocol.invalidServerMessages}; replicate ${r.protocol.replicates} (failed ${r.protocol.replicateFailed}, at most ${r.protocol.replicatesPeakPerSecond} to one encoder in a second), release ${r.protocol.releases} (unheld ${r.protocol.releasesOfUnheld})`,
    ],
    [
      'holder index vs truth',
      `server-only ${r.protocol.serverOnlyHolders}, sim-only ${r.protocol.simOnlyHolders}; unexpected closes ${JSON.stringify(r.protocol.unexpectedCloses)}`,
    ],
    [
      'simulator',
      `CPU ${f(r.sim.cpuSeconds, 1)} s, event-loop delay p99 ${f(r.sim.loopDelayP99Ms, 0)} ms, max ${f(r.sim.loopDelayMaxMs, 0)} ms; wall ${f(r.wallSeconds, 0)} s`,
    ],
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
