/**
 * The pool under churn: the real server in its own process, 20 simulated
 * encoders (random departures, silent deaths, reloads, and a quarter of the
 * pool leaving at once while work is in flight) and 30 simulated viewers, all
 * speaking the real protocol (tests/sim/churn.ts). Encoders are slow on
 * purpose (0.3-1.5x real time) so the batch loss lands on unfinished jobs.
 */
import { describe, expect, it } from 'vitest';
import { formatReport, runChurn, type ChurnReport } from '../sim/churn.ts';

const HEARTBEAT_MS = 1000;
const HEARTBEAT_TIMEOUT_MS = 3000;

describe('churn', () => {
  it('finishes every content, loses no shard and re-queues lost work while encoders come and go', async () => {
    let report: ChurnReport | undefined;
    try {
      report = await runChurn({
        encoders: 20,
        viewers: 30,
        contents: 2,
        seconds: 25,
        settleSeconds: 20,
        speedMin: 0.3,
        speedMax: 1.5,
        churnPerMin: 0.3,
        silentFraction: 0.5,
        rejoinFraction: 0.2,
        batchAt: 5,
        batchFraction: 0.25,
        heartbeatMs: HEARTBEAT_MS,
        heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
        seed: 7,
      });
    } finally {
      // The table is the first thing to read when an assertion below fails.
      if (report) console.log(formatReport(report));
    }
    const r = report!;

    // Every variant of every content ended up encoded, and still available at the end.
    expect(r.completionSeconds).not.toBeNull();
    expect(r.lost.notReadyAtEnd).toBe(0);
    expect(r.lost.atEnd, r.lost.examples.join(', ')).toBe(0);

    // The churn really happened: a batch left while work was in flight, and some tabs hung.
    expect(r.requeue.departures['batch-close'] + r.requeue.departures['batch-silent']).toBeGreaterThanOrEqual(4);
    expect(r.requeue.departures.silent + r.requeue.departures['batch-silent']).toBeGreaterThan(0);
    expect(r.requeue.reassignMs.n).toBeGreaterThan(0);

    // Every silent tab was noticed, within its timeout plus one sweep of the pool (and a second of
    // slack for a loaded machine); every unfinished shard of a departed tab went to someone else.
    const sweepMs = Math.max(100, Math.min(1000, HEARTBEAT_TIMEOUT_MS / 4));
    expect(r.requeue.silentUndetected).toBe(0);
    expect(r.requeue.silentDetectMs.max).toBeLessThanOrEqual(HEARTBEAT_TIMEOUT_MS + sweepMs + 1000);
    expect(r.requeue.neverReassigned).toBe(0);
    expect(r.requeue.duplicateAssignments).toBe(0);

    // Viewers were served by peers, and the server never listed a holder that is gone or released.
    expect(r.viewers.fromPeers).toBeGreaterThan(0);
    expect(r.protocol.serverOnlyHolders, r.protocol.mismatchExamples.join('\n')).toBe(0);

    // The server is healthy: it answered, every message it sent was valid, no live tab was dropped,
    // it logged no handler failure, and it shut down cleanly.
    expect(r.server.healthOk).toBe(true);
    expect(r.protocol.invalidServerMessages, r.protocol.invalidExamples.join('\n')).toBe(0);
    expect(r.protocol.unexpectedCloses).toEqual({});
    expect(r.server.errorLines).toEqual([]);
    expect(r.server.exit).toBe('code 0');
  });
});
