/**
 * README promises about the pool, shown once with real parts: a real server,
 * real WebSocket peers, and real shards made by native ffmpeg from the job's
 * own source slice, uploaded with its token and checked before acceptance
 * (the byte check is on everywhere here). Cross-checks are off unless a test
 * is about them, so that a second encoder's check jobs do not interleave with
 * the scheduling a test observes.
 *
 * What each test backs among the byteless ones (tests/harness/poolKit.ts):
 * /metrics (every shard assigned once, all accepted) and the killed encoder
 * back pool.test's first two; the deadline tests back its failure tests;
 * quarantine across a disconnect, the start class and busy-serving
 * replication back policies.test's quarantine, scheduling and replication
 * tests; the engine test backs engines.test; max holdings backs limits.test's.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { ffprobeJson, fixture } from '../harness/fixtures.ts';
import { nativeEncoder, NATIVE_ENGINE } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { completeJob, joinEncoder, metricsOf, nativeCaps } from '../harness/realShards.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const run = promisify(execFile);
let clip: Uint8Array;
const servers: TestServer[] = [];
const closers: (() => void)[] = [];
const timers: ReturnType<typeof setInterval>[] = [];

beforeAll(async () => {
  clip = fs.readFileSync(await fixture('v-23976'));
});
afterEach(async () => {
  for (const t of timers.splice(0)) clearInterval(t);
  for (const c of closers.splice(0)) c();
  for (const s of servers.splice(0)) await s.destroy();
});

/** No cross-checks (see the file comment); the byte check stays on. */
const NO_CHECKS = { verifySampleRate: 0, verifyNewEncoderJobs: 0 } as const;

async function start(over: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ heartbeatMs: 200, heartbeatTimeoutMs: 2000, verifyEngines: `ffmpeg-wasm,${NATIVE_ENGINE}`, ...NO_CHECKS, ...over });
  servers.push(s);
  return s;
}

/** One H.264 rendition at the source size: every job is a video job the native encoder makes. */
const LADDER = encodeURIComponent(JSON.stringify([{ id: 'v', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } }]));

async function publish(s: TestServer, body = clip, name = 'clip.mp4', ladder = true): Promise<string> {
  const r = await upload(s.url, body, ladder ? `?renditions=${LADDER}` : '', name);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json.id as string;
}

const mapOf = async (s: TestServer, id: string) => (await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
const track = <T extends WsPeer>(p: T) => (closers.push(() => p.kill()), p);

/** Finishes every job `peer` gets with real shards until the content is ready; returns the jobs in order. */
async function encodeAll(s: TestServer, peer: WsPeer, id: string): Promise<Job[]> {
  const jobs: Job[] = [];
  while ((await mapOf(s, id)).status !== 'ready') {
    const { job } = await peer.next('job', () => true, 30_000);
    jobs.push(job);
    await completeJob(s.url, peer, job);
  }
  return jobs;
}

describe('README behaviours with real shards', () => {
  it('GET /metrics counts what happened: peers, jobs, accepted and checked shards, replicas, locates', async () => {
    const s = await start();
    const id = await publish(s);
    const e = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const jobs = await encodeAll(s, e, id);
    const shards = (await mapOf(s, id)).shardMap.shards.length;
    // Every shard was given out exactly once.
    expect(jobs.flatMap((j) => j.shards.map((x) => x.index)).sort((a, b) => a - b)).toEqual([...Array(shards).keys()]);
    const v = track(await WsPeer.viewer(s.url));
    for (let i = 0; i < 3; i++) {
      v.send({ type: 'locate', requestId: i, contentId: id, from: 0, count: 4 });
      await v.next('holders');
    }
    // job-done is the last message; the metrics must have seen it.
    await waitFor(() => (s.pool.jobs.size === 0 ? true : undefined), 'the last job finished');
    const m = await metricsOf(s.url);
    const expected: [string, number][] = [
      ['shardcast_peers{role="encoder"}', 1],
      ['shardcast_peers{role="viewer"}', 1],
      ['shardcast_contents', 1],
      ['shardcast_encoders_quarantined', 0],
      ['shardcast_jobs_assigned_total', jobs.length],
      ['shardcast_jobs_completed_total', jobs.length],
      ['shardcast_jobs_in_flight{class="live"}', 0],
      ['shardcast_jobs_in_flight{class="start"}', 0],
      ['shardcast_jobs_in_flight{class="background"}', 0],
      ['shardcast_shards_accepted_total', shards],
      ['shardcast_shards_rejected_total', 0],
      ['shardcast_shard_variants{status="ready"}', shards],
      ['shardcast_shards_by_replicas{replicas="1"}', shards],
      ['shardcast_intake_checks_total', shards],
      ['shardcast_intake_refused_total', 0],
      ['shardcast_locate_requests_total', 3],
      ['shardcast_shard_requests_total', 12],
      ['shardcast_requeues_total', 0],
      ['shardcast_crosschecks_waiting', 0],
    ];
    for (const [k, want] of expected) expect([k, m.get(k)]).toEqual([k, want]);
    expect(m.get('shardcast_intake_bytes_total')).toBeGreaterThan(shards * 200);
    expect(m.get('shardcast_process_resident_bytes')).toBeGreaterThan(10 * 2 ** 20);
    // A byte-check refusal shows as a rejected shard and a refused intake; a running job as in flight.
    const id2 = await publish(s);
    const { job } = await e.next('job', (x) => x.job.contentId === id2);
    const r = await fetch(`${s.url}/api/contents/${id2}/shards/v/${job.shards[0]!.index}`, {
      method: 'PUT',
      body: new Uint8Array(64).fill(1),
      headers: { Authorization: `Bearer ${job.uploadToken}` },
    });
    expect(r.status).toBe(422);
    const m2 = await metricsOf(s.url);
    expect([m2.get('shardcast_intake_refused_total'), m2.get('shardcast_shards_rejected_total'), m2.get('shardcast_contents')]).toEqual([1, 1, 2]);
    expect([m2.get('shardcast_jobs_in_flight{class="start"}'), m2.get('shardcast_jobs_assigned_total')]).toEqual([1, jobs.length + 1]);
  });

  it('reissues a job past its deadline (job-cancel, re-queued first, finished by another encoder)', async () => {
    // Deadlines of 6 s: some 20 times what a real job takes here, and short enough to wait for.
    const s = await start({ jobDeadlineMinMs: 6000, jobDeadlineMsPerSecond: 0 });
    const id = await publish(s);
    const sleeper = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const { job: lost } = await sleeper.next('job');
    // A hung tab that can no longer encode anything (as after WebCodecs gave up): the reissue can only go elsewhere.
    sleeper.send({ type: 'capabilities', capabilities: { engines: [{ name: NATIVE_ENGINE, codecs: [] }], maxJobs: 1 } });
    const honest = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const jobs: Job[] = [];
    let reissue: Job | undefined;
    while ((await mapOf(s, id)).status !== 'ready') {
      const { job } = await honest.next('job', () => true, 30_000);
      jobs.push(job);
      if (job.shards[0]!.index === lost.shards[0]!.index) reissue = job;
      await completeJob(s.url, honest, job);
    }
    const cancel = await sleeper.next('job-cancel', () => true, 1000);
    expect(cancel).toMatchObject({ jobId: lost.id, reason: 'deadline passed' });
    const requeued = s.pool.recentEvents.filter((e) => e.type === 'job-requeued').map((e) => e.detail as { jobId: string; reason: string; indices: number[] });
    expect(requeued).toEqual([expect.objectContaining({ jobId: lost.id, reason: 'deadline passed', indices: lost.shards.map((x) => x.index) })]);
    // The reissue is exactly the lost job's shards, and it was the first job given out after the deadline.
    expect(reissue?.shards.map((x) => x.index)).toEqual(lost.shards.map((x) => x.index));
    expect(reissue!.id).not.toBe(lost.id);
    const when = (jobId: string) => s.pool.recentEvents.find((e) => e.type === 'job-assigned' && (e.detail as { jobId: string }).jobId === jobId)!.at;
    const requeuedAt = s.pool.recentEvents.find((e) => e.type === 'job-requeued')!.at;
    const afterDeadline = jobs.filter((j) => when(j.id) >= requeuedAt);
    expect(afterDeadline[0]?.id).toBe(reissue!.id);
    expect(s.pool.health.get(sleeper.peerId).timedOut).toBe(1);
  });

  it('after --max-job-attempts deadlines the shards are marked failed and not given out again', async () => {
    const s = await start({ jobDeadlineMinMs: 1000, jobDeadlineMsPerSecond: 0, maxJobAttempts: 2, quarantineAfterFailures: 10 });
    const id = await publish(s);
    const sleeper = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const { job: first } = await sleeper.next('job');
    const indices = first.shards.map((x) => x.index);
    await sleeper.next('job-cancel', (m) => m.jobId === first.id, 5000);
    // Re-queued work goes first: the same shards come back to the only encoder.
    const { job: second } = await sleeper.next('job', () => true, 5000);
    expect(second.shards.map((x) => x.index)).toEqual(indices);
    await sleeper.next('job-cancel', (m) => m.jobId === second.id, 5000);
    const map = await waitFor(async () => {
      const m = (await mapOf(s, id)).shardMap;
      return indices.every((i) => m.shards[i]!.renditions.v!.status === 'failed') ? m : undefined;
    }, 'the shards marked failed');
    expect(map.shards.filter((x) => x.renditions.v!.status === 'failed').map((x) => x.index)).toEqual(indices);
    const failed = s.pool.recentEvents.filter((e) => e.type === 'shard-failed').map((e) => e.detail as { key: { index: number }; attempts: number });
    expect(failed.map((f) => [f.key.index, f.attempts])).toEqual(indices.map((i) => [i, 2]));
    // Whatever it is given next is other shards.
    const { job: third } = await sleeper.next('job', () => true, 5000);
    expect(third.shards.some((x) => indices.includes(x.index))).toBe(false);
  });

  it('the start class: the first --start-seconds of every content are encoded before the rest of any', async () => {
    const s = await start({ startSeconds: 1 });
    const a = await publish(s);
    const b = await publish(s);
    const assigned: { klass: string }[] = [];
    s.pool.on('job-assigned', (e) => assigned.push(e));
    const e = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const jobs: Job[] = [];
    while ((await mapOf(s, a)).status !== 'ready' || (await mapOf(s, b)).status !== 'ready') {
      const { job } = await e.next('job', () => true, 30_000);
      jobs.push(job);
      await completeJob(s.url, e, job);
    }
    expect(jobs.length).toBeGreaterThanOrEqual(4);
    // Both starts first, in publication order; then the rest, content by content.
    expect(jobs.slice(0, 2).map((j) => [j.contentId, j.shards[0]!.index])).toEqual([
      [a, 0],
      [b, 0],
    ]);
    expect(assigned.map((x) => x.klass)).toEqual(['start', 'start', ...jobs.slice(2).map(() => 'background')]);
    expect(jobs.slice(2).every((j) => j.start >= 1)).toBe(true);
  });

  it('serves free encoders best score first: the faster of two idle encoders gets the first job', async () => {
    const s = await start();
    // The slow one joins first, so join order alone would give it the work.
    const slow = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps(1, 0.5) }));
    const fast = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps(1, 8) }));
    expect(s.pool.health.score(fast.peerId)).toBeGreaterThan(s.pool.health.score(slow.peerId));
    const id = await publish(s);
    const [{ job: fj }, { job: sj }] = await Promise.all([fast.next('job'), slow.next('job')]);
    expect(fj.shards[0]!.index).toBe(0);
    expect(sj.shards[0]!.index).toBeGreaterThan(fj.shards[fj.shards.length - 1]!.index);
    await Promise.all([completeJob(s.url, fast, fj), completeJob(s.url, slow, sj)]);
    void id;
  });

  it('--max-jobs-per-encoder caps the jobs one encoder holds, whatever it offers', async () => {
    const s = await start({ maxJobsPerEncoder: 2, jobSeconds: 1 });
    const id = await publish(s);
    const e = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps(4) }));
    const j1 = (await e.next('job')).job;
    const j2 = (await e.next('job')).job;
    await expect(e.next('job', () => true, 1500)).rejects.toThrow(/timed out/);
    expect(s.pool.peers.get(e.peerId)!.jobs.size).toBe(2);
    await completeJob(s.url, e, j1);
    const j3 = (await e.next('job', () => true, 10_000)).job;
    expect(new Set([j1.id, j2.id, j3.id]).size).toBe(3);
    expect(s.pool.peers.get(e.peerId)!.jobs.size).toBe(2);
    await expect(e.next('job', () => true, 800)).rejects.toThrow(/timed out/);
    void id;
  });

  it('a quarantine outlives a disconnect: the tab that resumes its id gets no work while it lasts', async () => {
    const s = await start({ quarantineAfterInvalid: 2, quarantineMs: 60_000 });
    const id = await publish(s);
    const bad = await joinEncoder(s.url, nativeCaps());
    const { job } = await bad.peer.next('job');
    // Two uploads that fail the byte check: two invalid shards.
    for (const i of [0, 1]) {
      const r = await fetch(`${s.url}/api/contents/${id}/shards/v/${job.shards[i]!.index}`, {
        method: 'PUT',
        body: new Uint8Array(512).fill(9),
        headers: { Authorization: `Bearer ${job.uploadToken}` },
      });
      expect(r.status).toBe(422);
    }
    const badId = bad.peer.peerId;
    await waitFor(() => s.pool.health.isQuarantined(badId) || undefined, 'quarantine');
    bad.peer.close();
    await bad.peer.closed;
    await waitFor(() => (!s.pool.peers.has(badId) ? true : undefined), 'the bad tab gone');
    const again = await joinEncoder(s.url, nativeCaps(), { peerId: badId, resume: bad.resume });
    track(again.peer);
    expect(again.peer.peerId).toBe(badId);
    expect(s.pool.health.isQuarantined(badId)).toBe(true);
    const snap = s.pool.snapshot().peers.find((p) => p.id === badId)!;
    expect(snap.health!.quarantinedUntil).toBeGreaterThan(Date.now() + 30_000);
    expect(snap.health!.invalid).toBe(2);
    // The work goes to a healthy encoder, never to the resumed one.
    const good = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    await encodeAll(s, good, id);
    expect(again.peer.received.filter((m) => m.type === 'job')).toHaveLength(0);
  });

  it('a cross-check waits for a verifier of the same engine (shardcast_crosschecks_waiting), then runs and passes', async () => {
    const s = await start({ verifyNewEncoderJobs: 3, verifySampleRate: 0.1 });
    const id = await publish(s);
    const first = await nativeEncoder(s.url, 'honest');
    closers.push(first.stop);
    await waitFor(async () => ((await mapOf(s, id)).status === 'ready' && s.pool.jobs.size === 0 ? true : undefined), 'content encoded', 60_000);
    // A new encoder's jobs are all checked, and nobody else runs its engine: every check waits.
    const m = await metricsOf(s.url);
    const planned = m.get('shardcast_crosschecks_planned_total')!;
    expect(planned).toBeGreaterThanOrEqual(1);
    expect(planned).toBeLessThanOrEqual(first.jobs);
    expect(m.get('shardcast_crosschecks_waiting')).toBe(planned);
    expect(m.get('shardcast_shards_verified_total')).toBe(0);
    // An encoder of another engine cannot verify: still waiting.
    const other = track(await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: 'ffmpeg-wasm', codecs: ['h264'] }], maxJobs: 1 } }));
    await expect(other.next('job', () => true, 1000)).rejects.toThrow(/timed out/);
    expect((await metricsOf(s.url)).get('shardcast_crosschecks_waiting')).toBe(planned);
    const verifier = await nativeEncoder(s.url, 'honest');
    closers.push(verifier.stop);
    const passed = await waitFor(
      () => {
        const p = s.pool.recentEvents.filter((e) => e.type === 'check-passed');
        return p.length === planned ? p.map((e) => e.detail as { verifier: string; shards: number }) : undefined;
      },
      'every check passed',
      60_000,
    );
    expect(passed.every((p) => p.verifier === verifier.peer.peerId)).toBe(true);
    const after = await metricsOf(s.url);
    expect([after.get('shardcast_crosschecks_waiting'), after.get('shardcast_crosscheck_mismatches_total')]).toEqual([0, 0]);
    expect(after.get('shardcast_shards_verified_total')).toBe(passed.reduce((n, p) => n + p.shards, 0));
    expect(s.pool.trust.get(first.peer.peerId).passed).toBe(planned);
  });

  it('a shard whose holders are all busy serving gets one more copy; holders answers list the least busy first', async () => {
    const s = await start({ cacheEnabled: true, busyServing: 3 });
    const id = await publish(s);
    const origin = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    await encodeAll(s, origin, id);
    await waitFor(() => (s.pool.snapshot().contents[0]!.renditions[0]!.cached.startsWith('111') ? true : undefined), 'shards 0-2 cached');
    const spare = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const v = track(await WsPeer.viewer(s.url));
    // About one request per second per shard: well under --replicate-above-rate (3), so one copy is enough...
    let n = 0;
    const ask = () => v.send({ type: 'locate', requestId: n++, contentId: id, from: 0, count: 1 });
    ask();
    timers.push(setInterval(ask, 1000));
    await expect(spare.next('replicate', () => true, 2500)).rejects.toThrow(/timed out/);
    // ...until its only holder says it serves 3 transfers at once.
    origin.send({ type: 'heartbeat', serving: 3 });
    const order = await spare.next('replicate', () => true, 10_000);
    expect(order).toMatchObject({ key: { contentId: id, rendition: 'v', index: 0 }, from: [origin.peerId], cached: true });
    expect(s.pool.recentEvents.filter((e) => e.type === 'replicate')).toHaveLength(1);
    // The spare copies it for real (from the cache here) and checks the hash before saying it holds it.
    const got = new Uint8Array(await (await fetch(`${s.url}/api/contents/${id}/shards/v/0`)).arrayBuffer());
    const { createHash } = await import('node:crypto');
    expect(createHash('sha256').update(got).digest('hex')).toBe(order.sha256);
    spare.send({ type: 'shard-stored', key: order.key, sha256: order.sha256, size: got.byteLength });
    await waitFor(() => (s.pool.holders.get(`${id}/v/0`)?.has(spare.peerId) ? true : undefined), 'the spare holds it');
    const holdersNow = async () => {
      const probe = await WsPeer.viewer(s.url);
      probe.send({ type: 'locate', requestId: 1, contentId: id, from: 0, count: 1 });
      const { shards } = await probe.next('holders');
      probe.close();
      return shards[0]!.peers;
    };
    expect(await holdersNow()).toEqual([spare.peerId, origin.peerId]);
    // Now the spare is the busy one.
    spare.send({ type: 'heartbeat', serving: 5 });
    origin.send({ type: 'heartbeat', serving: 0 });
    await waitFor(() => (s.pool.peers.get(spare.peerId)!.serving === 5 ? true : undefined), 'heartbeat read');
    expect(await holdersNow()).toEqual([origin.peerId, spare.peerId]);
  });

  it('re-queues exactly the unfinished shards of a killed encoder; another finishes them with real bytes', async () => {
    // No cache: the killed encoder's accepted shards lose their only holder and are encoded again.
    const s = await start({ cacheEnabled: false });
    const id = await publish(s);
    const e1 = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const { job } = await e1.next('job');
    expect(job.shards.length).toBeGreaterThan(4);
    // The tab gets three shards accepted, then crashes mid-job.
    const made = await completeJob(s.url, e1, { ...job, shards: job.shards.slice(0, 3) }, NATIVE_ENGINE, false);
    expect(made.size).toBe(3);
    e1.kill();
    await waitFor(() => (s.pool.peers.size === 0 ? true : undefined), 'encoder lost');
    const requeued = s.pool.recentEvents.filter((e) => e.type === 'job-requeued').map((e) => e.detail as { indices: number[]; reason: string });
    expect(requeued).toHaveLength(1);
    expect(requeued[0]!.indices).toEqual(job.shards.slice(3).map((x) => x.index));
    expect(requeued[0]!.reason).toMatch(/^encoder lost/);
    const e2 = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    const { job: again } = await e2.next('job');
    expect(again.shards.map((x) => x.index)).toEqual(job.shards.slice(3).map((x) => x.index));
    await completeJob(s.url, e2, again);
    const { job: lost } = await e2.next('job');
    expect(lost.shards.map((x) => x.index)).toEqual(job.shards.slice(0, 3).map((x) => x.index));
    await completeJob(s.url, e2, lost);
    const { shardMap } = await mapOf(s, id);
    for (const sh of job.shards) expect(shardMap.shards[sh.index]!.renditions.v!.status).toBe('ready');
    expect([...(s.pool.holders.get(`${id}/v/${job.shards[0]!.index}`) ?? [])]).toEqual([e2.peerId]);
  });

  it('names the fastest engine in each job and records the engine@build each accepted shard reports', async () => {
    const s = await start();
    const both = track(
      await WsPeer.encoder(s.url, {
        capabilities: {
          engines: [
            { name: NATIVE_ENGINE, build: 'ffmpeg-test', codecs: ['h264'], speed: 2 },
            { name: 'webcodecs', build: 'Chromium/1-test', codecs: ['h264'], speed: 20 },
          ],
          maxJobs: 1,
        },
      }),
    );
    const plain = track(
      await WsPeer.encoder(s.url, { capabilities: { ...nativeCaps(1, 2), engines: [{ ...nativeCaps(1, 2).engines[0]!, build: 'ffmpeg-test' }] } }),
    );
    const id = await publish(s);
    const [{ job: jb }, { job: jp }] = await Promise.all([both.next('job'), plain.next('job')]);
    expect([jb.engine, jp.engine]).toEqual(['webcodecs', NATIVE_ENGINE]);
    // The shards report the engine the job named, with a build, as a tab does.
    await Promise.all([completeJob(s.url, both, jb, `${jb.engine}@Chromium/1-test`), completeJob(s.url, plain, jp, `${jp.engine}@ffmpeg-test`)]);
    const { shardMap } = await mapOf(s, id);
    for (const x of jb.shards) expect(shardMap.shards[x.index]!.renditions.v!.engine).toBe('webcodecs@Chromium/1-test');
    for (const x of jp.shards) expect(shardMap.shards[x.index]!.renditions.v!.engine).toBe(`${NATIVE_ENGINE}@ffmpeg-test`);
  });

  it('--max-holdings-per-encoder bounds the holders index; announced holdings count only with the accepted hash', async () => {
    const s = await start({ maxHoldingsPerEncoder: 5, cacheEnabled: false });
    const id = await publish(s);
    const origin = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    await encodeAll(s, origin, id);
    expect(s.pool.peers.get(origin.peerId)!.holdings.size).toBe(5);
    const map = (await mapOf(s, id)).shardMap;
    const holdings = map.shards.map((sh) => ({
      key: { contentId: id, rendition: 'v', index: sh.index },
      sha256: sh.renditions.v!.sha256!,
      size: sh.renditions.v!.size!,
    }));
    expect(holdings.length).toBeGreaterThan(10);
    // A returning tab claims every shard, the first with bytes other than the accepted ones.
    const forged = [{ ...holdings[0]!, sha256: 'a'.repeat(64) }, ...holdings.slice(1)];
    const back = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps(), holdings: forged }));
    const held = [...s.pool.peers.get(back.peerId)!.holdings].map((k) => Number(k.split('/')[2]));
    expect(held).toEqual(holdings.slice(1, 6).map((h) => h.key.index));
  });

  it('publishes a MOV made by native ffmpeg: the map follows its frames, and its slices encode', async () => {
    const s = await start();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mov-'));
    closers.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const mov = path.join(dir, 'clip.mov');
    await run('ffmpeg', ['-v', 'error', '-y', '-i', await fixture('av-2997'), '-c', 'copy', '-f', 'mov', mov]);
    const probe = await ffprobeJson(mov, ['-show_entries', 'format=format_name:stream=codec_type,nb_frames']);
    expect(probe.format.format_name).toMatch(/mov/);
    const frames = Number(probe.streams.find((x: { codec_type: string }) => x.codec_type === 'video').nb_frames);
    const id = await publish(s, fs.readFileSync(mov), 'clip.mov', false);
    const { status, shardMap } = await mapOf(s, id);
    expect(status).not.toBe('failed');
    expect(shardMap.source.duration).toBeCloseTo(10, 1);
    expect(shardMap.source.container).toBe('mov');
    const kinds = shardMap.renditions.map((r) => ('video' in r ? 'video' : 'audio'));
    expect(kinds.filter((k) => k === 'video').length).toBeGreaterThanOrEqual(1);
    expect(kinds).toContain('audio');
    // 9 frames per 0.3 s shard at 29.97 fps, every frame in exactly one shard.
    expect(shardMap.shards.reduce((n, x) => n + x.frames, 0)).toBe(frames);
    expect(shardMap.shards.slice(0, -1).every((x) => x.frames === 9)).toBe(true);
    // Its video jobs are encoded from slices of the MOV and accepted like any other.
    const e = track(await WsPeer.encoder(s.url, { capabilities: nativeCaps() }));
    // It makes H.264 only, so its first job is a video one.
    const { job } = await e.next('job');
    expect(job.kind).toBe('video');
    const hashes = await completeJob(s.url, e, job);
    const after = (await mapOf(s, id)).shardMap;
    for (const [i, h] of hashes) expect(after.shards[i]!.renditions[job.rendition]!.sha256).toBe(h);
  });
});
