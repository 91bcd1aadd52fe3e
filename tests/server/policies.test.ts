/**
 * The pool manager's policies against the real server and real WebSocket
 * clients: quarantine, live-first scheduling with background pre-encoding that
 * pauses (and gives way) for live demand, demand-based replication and its
 * release, and orphaned shards restored from the cache.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { segmentName, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import type { Job, ServerMessage } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { autoEncode, BYTELESS, finishJob, waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const run = promisify(execFile);
let clip: Uint8Array;
let server: TestServer | undefined;
const peers: WsPeer[] = [];
const timers: ReturnType<typeof setInterval>[] = [];

beforeAll(async () => {
  clip = fs.readFileSync(await fixture('av-2997'));
});

afterEach(async () => {
  for (const t of timers.splice(0)) clearInterval(t);
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

async function start(over: Parameters<typeof startTestServer>[0] = {}) {
  // These fake encoders report made-up hashes and carry no bytes: the byte check and cross-checks are
  // off here (tests/server/trust.test.ts covers them with real shards).
  server = await startTestServer({ heartbeatMs: 100, heartbeatTimeoutMs: 500, cacheEnabled: false, ...BYTELESS, ...over });
  return server;
}

async function publish(s: TestServer): Promise<string> {
  const r = await upload(s.url, clip);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json.id as string;
}

const track = <T extends WsPeer>(p: T) => (peers.push(p), p);
const mapOf = async (s: TestServer, id: string) => (await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
const ready = (s: TestServer, id: string) => waitFor(async () => ((await mapOf(s, id)).status === 'ready' ? true : undefined), `content ${id} ready`);
const events = (s: TestServer, type: string) => s.pool.recentEvents.filter((e) => e.type === type);

/** A viewer whose playhead sits at `index` of a content, asking every `everyMs`. */
async function viewerAt(s: TestServer, contentId: string, index: number, count = 10, everyMs = 100): Promise<WsPeer> {
  const v = track(await WsPeer.viewer(s.url));
  let n = 0;
  const ask = () => v.send({ type: 'locate', requestId: n++, contentId, from: index, count });
  ask();
  timers.push(setInterval(ask, everyMs));
  return v;
}

describe('pool policies', () => {
  it('quarantines an encoder whose jobs keep failing, gives its work to others, and lets it back afterwards', async () => {
    const s = await start({ quarantineAfterFailures: 2, quarantineMs: 1500 });
    await publish(s);
    const bad = track(await WsPeer.encoder(s.url));
    for (let i = 0; i < 2; i++) {
      const { job } = await bad.next('job');
      bad.send({ type: 'job-failed', jobId: job.id, reason: 'simulated crash' });
    }
    const q = await waitFor(() => events(s, 'encoder-quarantined')[0], 'quarantine');
    expect(q.detail).toMatchObject({ peerId: bad.peerId, reason: '2 jobs in a row failed or timed out' });
    const snap = s.pool.snapshot().peers.find((p) => p.id === bad.peerId)!;
    expect(snap.health!.quarantinedUntil).toBeGreaterThan(Date.now());
    expect(snap.health!.failed).toBe(2);
    // While in quarantine it gets nothing; a healthy encoder gets the work, including the failed shards.
    const good = track(await WsPeer.encoder(s.url));
    const { job } = await good.next('job');
    expect(job.shards.length).toBeGreaterThan(0);
    await expect(bad.next('job', () => true, 800)).rejects.toThrow(/timed out/);
    // After the quarantine it is trusted with work again.
    finishJob(good, job);
    const back = await bad.next('job', () => true, 5000);
    expect(back.job.shards.length).toBeGreaterThan(0);
  });

  it('schedules shards near a viewer first, pre-encodes in the background only while no live work waits, and preempts background work', async () => {
    const s = await start({ startSeconds: 0, liveWindowSeconds: 2 });
    const a = await publish(s);
    const b = await publish(s);
    // No viewer: everything is background pre-encoding, in publication order.
    const e = track(await WsPeer.encoder(s.url));
    const { job: bg } = await e.next('job');
    expect(bg.contentId).toBe(a);
    expect(s.pool.snapshot().jobs[0]!.klass).toBe('background');
    // A viewer arrives in the middle of the other content: the background job gives way at once.
    await viewerAt(s, b, 20, 8);
    const cancel = await e.next('job-cancel');
    expect(cancel).toMatchObject({ jobId: bg.id, reason: 'preempted by live demand' });
    const log: Job[] = [];
    let liveDone = false;
    // Serve jobs one by one and note the class of each as it was assigned.
    const classes: string[] = [];
    for (let i = 0; i < 40 && !liveDone; i++) {
      const { job } = await e.next('job');
      const aj = s.pool.snapshot().jobs.find((j) => j.id === job.id)!;
      classes.push(aj.klass);
      log.push(job);
      finishJob(e, job);
      await e.next('job-cancel', () => false, 50).catch(() => {});
      liveDone = aj.klass === 'background';
    }
    // Live jobs cover the viewer's window, start at or before its playhead shard, and come before any background job.
    const firstBackground = classes.indexOf('background');
    expect(firstBackground).toBeGreaterThan(0);
    expect(classes.slice(0, firstBackground).every((c) => c === 'live')).toBe(true);
    expect(log[0]!.contentId).toBe(b);
    expect(log[0]!.shards[0]!.index).toBeLessThanOrEqual(20);
    expect(log[0]!.shards.some((x) => x.index === 20) || log[0]!.kind === 'audio').toBe(true);
    expect(events(s, 'job-preempted')).toHaveLength(1);
  });

  it('replicates a hot shard onto idle encoders up to the target, offers the replicas to viewers, and releases them when demand cools', async () => {
    const s = await start({ replicateAboveRate: 2, perReplicaRate: 2, maxReplicas: 3, demandHalfLifeMs: 300, releaseBelowRate: 0.5, releaseAfterMs: 300 });
    const id = await publish(s);
    const origin = track(await WsPeer.encoder(s.url));
    void autoEncode(origin, []);
    await ready(s, id);
    // Two idle encoders that honour replication orders.
    const spare = [track(await WsPeer.encoder(s.url)), track(await WsPeer.encoder(s.url))];
    const orders: ServerMessage[] = [];
    for (const p of spare) {
      p.ws.on('message', (d: Buffer) => {
        const m = JSON.parse(d.toString()) as ServerMessage;
        if (m.type === 'replicate') {
          orders.push(m);
          p.send({ type: 'shard-stored', key: m.key, sha256: m.sha256, size: m.size });
        }
      });
    }
    // Eight viewers hammer shards 0-4.
    for (let i = 0; i < 8; i++) await viewerAt(s, id, 0, 5);
    const key = `${id}/audio/0`;
    await waitFor(() => ((s.pool.holders.get(key)?.size ?? 0) >= 3 ? true : undefined), 'three holders of a hot shard');
    // Only hot shards were copied, each from holders the pool knows (the original, or a replica made before).
    const known = new Set([origin.peerId, ...spare.map((p) => p.peerId)]);
    expect(orders.every((m) => m.type === 'replicate' && m.key.index < 5 && m.from.includes(origin.peerId) && m.from.every((f) => known.has(f)))).toBe(true);
    const probe = track(await WsPeer.viewer(s.url));
    probe.send({ type: 'locate', requestId: 1, contentId: id, from: 0, count: 1 });
    const { shards } = await probe.next('holders');
    expect(new Set(shards[0]!.peers)).toEqual(new Set([origin.peerId, ...spare.map((p) => p.peerId)]));
    // Demand stops: the replicas are released, the original copy stays.
    for (const t of timers.splice(0)) clearInterval(t);
    const released = await Promise.all(spare.map((p) => p.next('release', (m) => `${m.key.contentId}/${m.key.rendition}/${m.key.index}` === key, 10_000)));
    expect(released).toHaveLength(2);
    await waitFor(() => (s.pool.holders.get(key)?.size === 1 ? true : undefined), 'back to one holder');
    expect([...s.pool.holders.get(key)!]).toEqual([origin.peerId]);
    expect(events(s, 'replica-released').length).toBeGreaterThanOrEqual(2);
  });

  it('asks an encoder to restore a shard from the cache when its last holder leaves', async () => {
    // Real bytes here: the server checks them before accepting, and keeps them in its cache.
    const s = await start({ cacheEnabled: true, testHooks: { verifyShardBytes: true } });
    const id = await publish(s);
    const origin = track(await WsPeer.encoder(s.url));
    const { job } = await origin.next('job');
    expect(job.kind).toBe('video');
    // Real shard bytes for the job (native ffmpeg standing in for the tab's ffmpeg.wasm, same command line),
    // uploaded with the job's token, then accepted by their real hashes, the way an encoder tab does.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orphan-'));
    const slice = await fetch(new URL(job.sourceUrl, s.url));
    fs.writeFileSync(path.join(dir, 'in.mp4'), new Uint8Array(await slice.arrayBuffer()));
    await run('ffmpeg', [
      '-v',
      'error',
      ...videoJobArgs(job, Number(slice.headers.get('x-slice-start')), path.join(dir, 'in.mp4'), { preset: 'veryfast' }, path.join(dir, 'shard_%04d.mp4')),
    ]);
    for (const [i, sh] of job.shards.entries()) {
      const bytes = fs.readFileSync(path.join(dir, segmentName(i)));
      const key = { contentId: id, rendition: job.rendition, index: sh.index };
      const put = await fetch(`${s.url}/api/contents/${id}/shards/${job.rendition}/${sh.index}`, {
        method: 'PUT',
        body: bytes,
        headers: { Authorization: `Bearer ${job.uploadToken}` },
      });
      expect(put.status, await put.text()).toBe(200);
      origin.send({
        type: 'shard-ready',
        jobId: job.id,
        key,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        size: bytes.byteLength,
        engine: job.engine!,
      });
      await origin.next('shard-accepted', (m) => m.key.index === sh.index);
      await waitFor(() => s.pool.snapshot().contents[0]!.renditions.find((r) => r.id === job.rendition)!.cached[sh.index] === '1' || undefined, 'cached');
    }
    origin.send({ type: 'job-done', jobId: job.id });
    // An encoder that makes nothing but can hold shards; the only holder crashes.
    const heir = track(await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: 'test', codecs: [] }], maxJobs: 1 } }));
    origin.kill();
    const orders = await Promise.all(job.shards.map((x) => heir.next('replicate', (m) => m.key.index === x.index && m.key.rendition === job.rendition)));
    for (const m of orders) expect(m).toMatchObject({ cached: true, from: [] });
    const orphaned = events(s, 'shard-orphaned').filter((e) => (e.detail as { key: string }).key.startsWith(`${id}/${job.rendition}/`));
    expect(orphaned).toHaveLength(job.shards.length);
    expect(orphaned.every((e) => (e.detail as { action: string }).action === 'from-cache')).toBe(true);
    // The heir copies one from the cache for real and is then offered to viewers.
    const m = orders[0]!;
    const got = await fetch(`${s.url}/api/contents/${id}/shards/${m.key.rendition}/${m.key.index}`);
    const bytes = new Uint8Array(await got.arrayBuffer());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(m.sha256);
    heir.send({ type: 'shard-stored', key: m.key, sha256: m.sha256, size: bytes.byteLength });
    await waitFor(() => (s.pool.holders.get(`${id}/${m.key.rendition}/${m.key.index}`)?.has(heir.peerId) ? true : undefined), 'heir holds it');
  });
});
