/**
 * The pool under churn: the real server in its own process, 20 simulated
 * encoders (random departures, silent deaths, reloads, and a quarter of the
 * pool leaving at once while work is in flight) and 30 simulated viewers, all
 * speaking the real protocol (tests/sim/churn.ts). Encoders are slow on
 * purpose (0.3-1.5x real time) so the batch loss lands on unfinished jobs.
 * Then one silent tab against an in-process server, to pin down when the pool
 * drops it: not before its heartbeat timeout, and with its job re-queued.
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fixture } from '../harness/fixtures.ts';
import { BYTELESS, waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';
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

    // Every silent tab was noticed (when, relative to its timeout, is the next test's subject); every
    // unfinished shard of a departed tab went to someone else.
    expect(r.requeue.silentUndetected).toBe(0);
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

  it('drops a silent tab only once its heartbeat timeout has passed, and re-queues its job then', async () => {
    // This fake encoder carries no bytes: the byte check is off (trust.test.ts covers it with real shards).
    const s = await startTestServer({ heartbeatMs: 500, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, ...BYTELESS });
    const listed = async (peerId: string) => {
      const pool = (await (await fetch(`${s.url}/api/pool`)).json()) as { peers: { id: string }[]; jobs: { id: string; peerId: string }[] };
      return { peer: pool.peers.some((p) => p.id === peerId), jobs: pool.jobs.filter((j) => j.peerId === peerId).map((j) => j.id) };
    };
    try {
      const r = await upload(s.url, fs.readFileSync(await fixture('v-23976')));
      expect(r.status).toBe(201);
      const e = await WsPeer.encoder(s.url);
      const { job } = await e.next('job');
      // A tab that keeps talking stays, however long it has been connected: here longer than the timeout.
      await new Promise((res) => setTimeout(res, HEARTBEAT_TIMEOUT_MS + 500));
      expect(await listed(e.peerId)).toEqual({ peer: true, jobs: [job.id] });
      // Now it goes silent: its last message is this heartbeat, where the server's timeout starts.
      e.silent();
      e.send({ type: 'heartbeat' });
      const lastSent = Date.now();
      let lostAt = 0;
      let requeued: number[] = [];
      s.pool.on('peer-lost', (x) => {
        if (x.peerId === e.peerId) lostAt = Date.now();
      });
      s.pool.on('job-requeued', (x) => {
        if (x.jobId === job.id) requeued = x.indices;
      });
      // Half way through its timeout it is still a member, with its job.
      await new Promise((res) => setTimeout(res, HEARTBEAT_TIMEOUT_MS / 2));
      expect(await listed(e.peerId)).toEqual({ peer: true, jobs: [job.id] });
      expect(requeued).toEqual([]);
      // Then it is dropped (a generous wait: only the order matters), not before its timeout.
      expect((await e.closed).code).toBe(4000);
      await waitFor(() => lostAt || undefined, 'peer-lost', 30_000);
      expect(lostAt - lastSent).toBeGreaterThanOrEqual(HEARTBEAT_TIMEOUT_MS);
      expect(await listed(e.peerId)).toEqual({ peer: false, jobs: [] });
      expect(requeued).toEqual(job.shards.map((x) => x.index));
      // The re-queued shards go to the next encoder.
      const e2 = await WsPeer.encoder(s.url);
      const { job: again } = await e2.next('job');
      expect(again.shards.map((x) => x.index)).toEqual(job.shards.map((x) => x.index));
      e2.close();
    } finally {
      await s.destroy();
    }
  });
});
