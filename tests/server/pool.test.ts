/**
 * The pool manager against real WebSocket clients playing encoders and viewers.
 * No shard bytes travel here: encoders report hashes, which is all the pool sees.
 */
import fs from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { autoEncode, BYTELESS, finishJob, hashFor, waitFor } from '../harness/poolKit.ts';
import { fakeHash, WsPeer } from '../harness/wsPeer.ts';

let clip: Uint8Array;
let server: TestServer | undefined;
const peers: WsPeer[] = [];

beforeAll(async () => {
  clip = fs.readFileSync(await fixture('av-2997'));
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

async function start(over: Parameters<typeof startTestServer>[0] = {}) {
  // These fake encoders report made-up hashes and carry no bytes: the byte check and cross-checks are
  // off here (tests/server/trust.test.ts covers them with real shards).
  server = await startTestServer({ heartbeatMs: 100, heartbeatTimeoutMs: 500, ...BYTELESS, ...over });
  return server;
}

async function publish(s: TestServer): Promise<string> {
  const r = await upload(s.url, clip);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json.id as string;
}

async function getMap(s: TestServer, id: string): Promise<{ status: string; shardMap: ShardMap }> {
  const res = await fetch(`${s.url}/api/contents/${id}`);
  return (await res.json()) as { status: string; shardMap: ShardMap };
}

const track = <T extends WsPeer>(p: T) => (peers.push(p), p);
describe('pool manager', () => {
  it('assigns every shard of every rendition once, and all complete', async () => {
    const s = await start();
    const id = await publish(s);
    const byA: Job[] = [];
    const byB: Job[] = [];
    const a = track(await WsPeer.encoder(s.url));
    const b = track(await WsPeer.encoder(s.url));
    void autoEncode(a, byA);
    void autoEncode(b, byB);
    const done = await waitFor(async () => {
      const c = await getMap(s, id);
      return c.status === 'ready' ? c : undefined;
    }, 'content ready');
    const map = done.shardMap;
    const jobs = [...byA, ...byB];
    // Every variant ready with the hash its encoder reported, and assigned exactly once.
    const assigned = new Map<string, number>();
    for (const j of jobs) for (const sh of j.shards) assigned.set(`${j.rendition}/${sh.index}`, (assigned.get(`${j.rendition}/${sh.index}`) ?? 0) + 1);
    let variants = 0;
    for (const sh of map.shards) {
      for (const [r, st] of Object.entries(sh.renditions)) {
        variants++;
        expect(st.status).toBe('ready');
        expect(st.sha256).toBe(fakeHash(`${id}/${r}/${sh.index}`));
        expect(assigned.get(`${r}/${sh.index}`)).toBe(1);
      }
    }
    expect(assigned.size).toBe(variants);
    expect(new Set(jobs.map((j) => j.id)).size).toBe(jobs.length);
    // Both encoders took part: each got jobs and finished them, and the pool counts them as its.
    const pool = (await (await fetch(`${s.url}/api/pool`)).json()) as { peers: { id: string; completedJobs: number; shardsEncoded: number }[] };
    for (const [p, log] of [
      [a, byA],
      [b, byB],
    ] as const) {
      expect(log.length).toBeGreaterThan(0);
      const row = pool.peers.find((x) => x.id === p.peerId)!;
      expect(row.completedJobs).toBe(log.length);
      expect(row.shardsEncoded).toBe(log.reduce((n, j) => n + j.shards.length, 0));
    }
    // Each shard's holder, as a viewer is told, is the encoder whose job made it (no cross-checks or
    // replication here, so no one else holds it).
    const maker = new Map<string, string>();
    for (const [p, log] of [
      [a, byA],
      [b, byB],
    ] as const)
      for (const j of log) for (const sh of j.shards) maker.set(`${j.rendition}/${sh.index}`, p.peerId);
    const viewer = track(await WsPeer.viewer(s.url));
    const renditions = map.renditions.map((r) => r.id);
    viewer.send({ type: 'locate', requestId: 1, contentId: id, from: 0, count: map.shards.length, renditions });
    const located = await viewer.next('holders', (m) => m.requestId === 1);
    let checked = 0;
    for (const sh of located.shards) {
      expect(sh.peers, `${sh.rendition}/${sh.index}`).toEqual([maker.get(`${sh.rendition}/${sh.index}`)]);
      checked++;
    }
    expect(checked).toBe(variants);
    // Video jobs are runs of consecutive shards of about 2-5 s; the 10 s audio is one job.
    for (const j of jobs) {
      const idx = j.shards.map((x) => x.index);
      expect(idx).toEqual(idx.map((_, i) => idx[0]! + i));
      if (j.kind === 'video') expect(j.end - j.start).toBeLessThanOrEqual(5 + 1e-6);
    }
    expect(jobs.filter((j) => j.kind === 'audio')).toHaveLength(1);
    const audioJob = jobs.find((j) => j.kind === 'audio')!;
    expect(audioJob.shards.every((x) => x.samples! % 1024 === 0)).toBe(true);
    // A job's source URL answers with a slice.
    const job = jobs.find((j) => j.kind === 'video')!;
    const slice = await fetch(new URL(job.sourceUrl, s.url));
    expect(slice.status).toBe(200);
    expect(Number(slice.headers.get('x-slice-start'))).toBeLessThanOrEqual(job.start + 1e-6);
  });

  it('re-queues exactly the unfinished shards of a killed encoder, and they complete elsewhere', async () => {
    const s = await start();
    const id = await publish(s);
    const e1 = track(await WsPeer.encoder(s.url));
    const { job } = await e1.next('job');
    expect(job.shards.length).toBeGreaterThan(4);
    const finished = job.shards.slice(0, 3).map((x) => x.index);
    for (const i of finished) {
      e1.send({ type: 'shard-ready', jobId: job.id, key: { contentId: id, rendition: job.rendition, index: i }, sha256: hashFor(job, i), size: 500 });
      await e1.next('shard-accepted', (m) => m.key.index === i);
    }
    e1.kill();
    await waitFor(() => (s.pool.peers.size === 0 ? true : undefined), 'encoder lost');
    const e2 = track(await WsPeer.encoder(s.url));
    const { job: again } = await e2.next('job');
    expect(again.rendition).toBe(job.rendition);
    expect(again.shards.map((x) => x.index)).toEqual(job.shards.slice(3).map((x) => x.index));
    finishJob(e2, again);
    // The finished shards' only holder left and there is no cache copy: they are encoded again.
    const { job: lost } = await e2.next('job');
    expect(lost.rendition).toBe(job.rendition);
    expect(lost.shards.map((x) => x.index)).toEqual(finished);
    finishJob(e2, lost);
    await e2.next('job'); // it moves on to other work
    const { shardMap } = await getMap(s, id);
    for (const sh of job.shards) {
      expect(shardMap.shards[sh.index]!.renditions[job.rendition]!.status).toBe('ready');
    }
    const events = s.pool.recentEvents.filter((e) => e.type === 'job-requeued');
    expect(events).toHaveLength(1);
    expect((events[0]!.detail as { indices: number[] }).indices).toEqual(job.shards.slice(3).map((x) => x.index));
  });

  it('re-queues the work of an encoder that stops sending heartbeats', async () => {
    const s = await start();
    await publish(s);
    const e1 = track(await WsPeer.encoder(s.url));
    const { job } = await e1.next('job');
    e1.silent();
    const closed = await e1.closed;
    expect(closed.code).toBe(4000);
    const e2 = track(await WsPeer.encoder(s.url));
    const { job: again } = await e2.next('job');
    expect(again.shards.map((x) => x.index)).toEqual(job.shards.map((x) => x.index));
  });

  it('a reported failure re-queues the job, and repeated failures mark the shards failed', async () => {
    const s = await start({ maxJobAttempts: 2 });
    const id = await publish(s);
    const e1 = track(await WsPeer.encoder(s.url));
    const { job } = await e1.next('job');
    e1.send({ type: 'job-failed', jobId: job.id, reason: 'test failure 1' });
    const { job: j2 } = await e1.next('job');
    expect(j2.shards.map((x) => x.index)).toEqual(job.shards.map((x) => x.index));
    e1.send({ type: 'job-failed', jobId: j2.id, reason: 'test failure 2' });
    await e1.next('job', (m) => m.job.shards[0]!.index !== job.shards[0]!.index || m.job.rendition !== job.rendition);
    const { shardMap } = await getMap(s, id);
    for (const sh of job.shards) expect(shardMap.shards[sh.index]!.renditions[job.rendition]!.status).toBe('failed');
  });

  it('keeps every published content and accepted shard across a restart; encoders re-announce holdings', async () => {
    let s = await start();
    const ids = [await publish(s), await publish(s)];
    const e1 = track(await WsPeer.encoder(s.url));
    const { job } = await e1.next('job');
    const key = { contentId: job.contentId, rendition: job.rendition, index: job.shards[0]!.index };
    const sha = hashFor(job, key.index);
    e1.send({ type: 'shard-ready', jobId: job.id, key, sha256: sha, size: 777 });
    await e1.next('shard-accepted');
    const before = await Promise.all(ids.map((i) => getMap(s, i)));
    e1.kill();
    s = server = await s.restart();
    const list = (await (await fetch(`${s.url}/api/contents`)).json()) as { contents: { id: string }[] };
    expect(list.contents.map((c) => c.id).sort()).toEqual([...ids].sort());
    const after = await Promise.all(ids.map((i) => getMap(s, i)));
    for (let i = 0; i < ids.length; i++) {
      const norm = (m: ShardMap) =>
        JSON.stringify(m.shards.map((sh) => Object.values(sh.renditions).map((st) => (st.status === 'ready' ? st.sha256 : 'not-ready'))));
      expect(norm(after[i]!.shardMap)).toEqual(norm(before[i]!.shardMap));
    }
    expect(after[0]!.shardMap.shards[key.index]!.renditions[key.rendition]).toMatchObject({ status: 'ready', sha256: sha, size: 777 });
    // The encoder comes back with what it holds; a viewer can find it; a false claim is ignored.
    const back = track(
      await WsPeer.encoder(s.url, {
        holdings: [
          { key, sha256: sha, size: 777 },
          { key: { ...key, index: key.index + 1 }, sha256: sha, size: 777 },
        ],
      }),
    );
    const viewer = track(await WsPeer.viewer(s.url));
    viewer.send({ type: 'locate', requestId: 9, contentId: key.contentId, from: key.index, count: 2, renditions: [key.rendition] });
    const holders = await viewer.next('holders', (m) => m.requestId === 9);
    expect(holders.shards.find((x) => x.index === key.index)!.peers).toEqual([back.peerId]);
    expect(holders.shards.find((x) => x.index === key.index + 1)!.peers).toEqual([]);
  });

  it('gives an id back on reconnect only with the secret the pool issued with it', async () => {
    const s = await start();
    const first = track(await WsPeer.connect(s.url));
    const w = await first.hello({ role: 'encoder', capabilities: { engines: [{ name: 'test', codecs: ['h264', 'aac'] }], maxJobs: 1 } });
    expect(w.resume.length).toBeGreaterThanOrEqual(16);
    first.kill();
    await waitFor(() => (s.pool.peers.size === 0 ? true : undefined), 'encoder gone');
    // Ids are public on /api/pool: knowing one must not be enough to become that encoder.
    const thief = track(await WsPeer.connect(s.url));
    expect(
      (await thief.hello({ role: 'encoder', peerId: w.peerId, capabilities: { engines: [{ name: 'test', codecs: ['h264'] }], maxJobs: 1 } })).peerId,
    ).not.toBe(w.peerId);
    const guesser = track(await WsPeer.connect(s.url));
    expect((await guesser.hello({ role: 'viewer', peerId: w.peerId, resume: 'x'.repeat(w.resume.length) })).peerId).not.toBe(w.peerId);
    const back = track(await WsPeer.connect(s.url));
    const again = await back.hello({
      role: 'encoder',
      peerId: w.peerId,
      resume: w.resume,
      capabilities: { engines: [{ name: 'test', codecs: ['h264'] }], maxJobs: 1 },
    });
    expect(again.peerId).toBe(w.peerId);
    // Each welcome issues a fresh secret: the old one is spent.
    expect(again.resume).not.toBe(w.resume);
  });

  it('schedules by the capabilities an encoder announces later', async () => {
    const s = await start();
    await publish(s);
    const e = track(await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: 'test', codecs: ['aac'] }], maxJobs: 1 } }));
    const { job } = await e.next('job');
    expect(job.kind).toBe('audio');
    finishJob(e, job);
    // Only video is left, which this encoder cannot make: nothing comes.
    await expect(e.next('job', () => true, 1500)).rejects.toThrow();
    e.send({ type: 'capabilities', capabilities: { engines: [{ name: 'test', codecs: ['h264', 'aac'] }], maxJobs: 1 } });
    const { job: video } = await e.next('job');
    expect(video.kind).toBe('video');
    // A viewer has no capabilities to change.
    const v = track(await WsPeer.viewer(s.url));
    v.send({ type: 'capabilities', capabilities: { engines: [{ name: 'test', codecs: ['h264'] }], maxJobs: 1 } });
    expect((await v.next('error')).code).toBe('not-an-encoder');
  });

  it('relays WebRTC signals between peers, and refuses unknown targets', async () => {
    const s = await start();
    const a = track(await WsPeer.viewer(s.url));
    const b = track(await WsPeer.encoder(s.url));
    a.send({ type: 'signal', to: b.peerId, data: { type: 'offer', sdp: 'v=0 test' } });
    const got = await b.next('signal');
    expect(got).toEqual({ type: 'signal', from: a.peerId, data: { type: 'offer', sdp: 'v=0 test' } });
    a.send({ type: 'signal', to: 'nobody', data: {} });
    expect((await a.next('error')).code).toBe('unknown-peer');
  });

  it('answers a burst of malformed messages with errors and keeps serving other clients', async () => {
    const s = await start();
    const id = await publish(s);
    const viewer = track(await WsPeer.viewer(s.url));
    const garbage: (string | Buffer)[] = [
      '',
      'null',
      '{',
      '[]',
      '{"type":"hello"}',
      JSON.stringify({ type: 'shard-ready', key: { contentId: '../../etc', rendition: 'x', index: 1 }, sha256: 'no', size: 1 }),
      JSON.stringify({ type: 'locate', requestId: -1, contentId: id }),
      JSON.stringify({ type: 'signal', to: 'x', data: 'not-an-object' }),
      Buffer.from([0xff, 0xfe, 0x00, 0x01]),
      'x'.repeat(300_000),
    ];
    // Many clients send garbage at once, each before and after joining.
    const attackers = await Promise.all(Array.from({ length: 10 }, () => WsPeer.connect(s.url)));
    for (const p of attackers) track(p);
    for (const p of attackers) for (const g of garbage.slice(0, 9)) p.sendRaw(g);
    await Promise.all(attackers.map((p) => p.next('error', (m) => m.code === 'bad-message')));
    // Joined clients sending nonsense get errors for each message.
    const joined = track(await WsPeer.encoder(s.url));
    joined.send({ type: 'job-done', jobId: 'not-mine' });
    expect((await joined.next('error', (m) => m.ref === 'job-done')).code).toBe('unknown-job');
    joined.send({ type: 'shard-ready', key: { contentId: id, rendition: 'zzz', index: 0 }, sha256: 'a'.repeat(64), size: 1 });
    expect((await joined.next('error', (m) => m.ref === 'shard-ready')).code).toBe('unknown-shard');
    joined.send({ type: 'hello', protocol: 1, role: 'viewer' });
    expect((await joined.next('error', (m) => m.ref === 'hello')).code).toBe('already-joined');
    // An oversized frame closes that one socket, not the server.
    const big = track(await WsPeer.connect(s.url));
    big.sendRaw('x'.repeat(300_000));
    expect((await big.closed).code).toBe(1009);
    // A client that only sends garbage is disconnected after a while.
    const spammer = track(await WsPeer.connect(s.url));
    for (let i = 0; i < 50; i++) spammer.sendRaw('{bad');
    expect((await spammer.closed).code).toBe(1008);
    // Everyone else is still served.
    viewer.send({ type: 'locate', requestId: 1, contentId: id, count: 3 });
    const h = await viewer.next('holders');
    expect(h.shards.length).toBeGreaterThan(0);
    expect((await fetch(`${s.url}/api/health`)).status).toBe(200);
    expect(s.pool.counters.badMessages).toBeGreaterThanOrEqual(90);
  });
});
