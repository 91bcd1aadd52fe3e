/**
 * What a restart does to accepted shards, against the real server as a child
 * process (signaling/main.ts) restarted on the same DATA_DIR, with the byte
 * check on and native ffmpeg making real shards (tests/harness/realShards.ts):
 *
 * - the cache is checked against the accepted-shard registry at start: a
 *   corrupt, truncated or missing cached copy is dropped (never served), and
 *   once the restart grace period (--restart-grace-ms) has passed, every
 *   accepted shard that no reconnected encoder announced and the cache lacks
 *   goes back to the queue and is handed out again; one a returning encoder
 *   announced in time stays ready;
 * - with the cache off, a whole job whose encoder never returns is encoded again.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { waitFor } from '../harness/poolKit.ts';
import { completeJob, joinEncoder, nativeCaps } from '../harness/realShards.ts';
import { killServer, spawnServer, stopServer, type ServerProcess } from '../harness/serverProcess.ts';
import { WsPeer } from '../harness/wsPeer.ts';
import { NATIVE_ENGINE } from '../harness/nativeEncoder.ts';

const TOKEN = 'restart-admin-token';
// Cross-checks off: one native encoder does all the work, and nothing waits for a verifier.
const ARGS = ['--admin-token', TOKEN, '--heartbeat-ms', '200', '--heartbeat-timeout-ms', '2000', '--verify-new-encoder-jobs', '0', '--verify-sample-rate', '0'];
const GRACE_MS = 5000;

let clip: Uint8Array;
const dirs: string[] = [];
const procs: ServerProcess[] = [];
const peers: WsPeer[] = [];

beforeAll(async () => {
  clip = new Uint8Array(fs.readFileSync(await fixture('v-23976')));
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  for (const p of procs.splice(0)) await stopServer(p);
});
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function spawn(dataDir: string, extra: string[]): Promise<ServerProcess> {
  const p = await spawnServer(dataDir, [...ARGS, ...extra]);
  procs.push(p);
  return p;
}

async function publish(s: ServerProcess): Promise<string> {
  const res = await fetch(`${s.url}/api/contents`, { method: 'POST', body: clip as unknown as BodyInit, headers: { Authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

const statusOf = async (s: ServerProcess, id: string, rendition: string, index: number): Promise<string> => {
  const map = ((await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { shardMap: ShardMap }).shardMap;
  return map.shards[index]!.renditions[rendition]!.status;
};

const shardUrl = (s: ServerProcess, id: string, rendition: string, index: number) => `${s.url}/api/contents/${id}/shards/${rendition}/${index}`;

/** One encoder takes a job and finishes it with real shards; returns the job and the accepted hashes. */
async function encodeOneJob(s: ServerProcess): Promise<{ peer: WsPeer; resume: string; job: Job; hashes: Map<number, string> }> {
  const { peer, resume } = await joinEncoder(s.url, nativeCaps(1));
  peers.push(peer);
  const { job } = await peer.next('job', () => true, 30_000);
  const hashes = await completeJob(s.url, peer, job);
  return { peer, resume, job, hashes };
}

/** A native encoder joins and does every job it is given until each of `wanted` has been handed to it. */
async function encodeUntilHandedOut(s: ServerProcess, id: string, rendition: string, wanted: number[]): Promise<void> {
  const { peer } = await joinEncoder(s.url, nativeCaps(1));
  peers.push(peer);
  const handedOut = new Set<number>();
  await waitFor(
    async () => {
      const { job } = await peer.next('job', () => true, 30_000);
      if (job.contentId === id && job.rendition === rendition) for (const sh of job.shards) handedOut.add(sh.index);
      await completeJob(s.url, peer, job);
      return wanted.every((i) => handedOut.has(i)) || undefined;
    },
    `shards ${wanted.join(', ')} of ${id}/${rendition} handed out again`,
    90_000,
  );
}

describe('restart', () => {
  it('checks the cache against the registry at start and, after the grace period, re-queues what has no copy; an announced holding stays', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-restart-'));
    dirs.push(dataDir);
    let s = await spawn(dataDir, []);
    const id = await publish(s);
    const { peer, resume, job, hashes } = await encodeOneJob(s);
    const [i0, i1, i2, i3, i4] = job.shards.map((sh) => sh.index);
    const r = job.rendition;
    // Accepted bytes go to the cache just after acceptance: wait until every one is there.
    for (const i of hashes.keys()) await waitFor(async () => (await fetch(shardUrl(s, id, r, i))).status === 200 || undefined, `shard ${i} cached`);
    await killServer(s);
    peer.kill();
    procs.splice(0);

    // While the server was down: one cached file corrupted in place (same size), one truncated, two deleted.
    const file = (i: number) => path.join(dataDir, 'cache', id, r, `${i}.mp4`);
    const bytes = fs.readFileSync(file(i0!));
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    fs.writeFileSync(file(i0!), bytes);
    fs.truncateSync(file(i1!), 100);
    fs.rmSync(file(i2!));
    fs.rmSync(file(i3!));

    s = await spawn(dataDir, ['--restart-grace-ms', String(GRACE_MS)]);
    const startedAt = Date.now();
    // The damaged copies are never served; the intact one is, with the accepted bytes.
    for (const i of [i0!, i1!, i2!, i3!]) expect((await fetch(shardUrl(s, id, r, i))).status, `cached copy of ${i}`).toBe(404);
    expect((await fetch(shardUrl(s, id, r, i4!))).status).toBe(200);
    expect(
      s.tail.some((l) => /cache: 2 files did not match the accepted hash/.test(l)),
      s.tail.join('\n'),
    ).toBe(true);

    // The encoder comes back within the grace period, still holding i3 (it offers only VP9 now, so it takes no H.264 job).
    const back = await WsPeer.connect(s.url);
    peers.push(back);
    await back.hello({
      role: 'encoder',
      peerId: peer.peerId,
      resume,
      capabilities: { engines: [{ name: NATIVE_ENGINE, codecs: ['vp9'] }], maxJobs: 1 },
      holdings: [{ key: { contentId: id, rendition: r, index: i3! }, sha256: hashes.get(i3!)!, size: 1 }],
    });
    for (const i of [i0!, i1!, i2!, i3!]) expect(await statusOf(s, id, r, i), `${i} within the grace period`).toBe('ready');
    expect(Date.now() - startedAt, 'the checks above ran within the grace period').toBeLessThan(GRACE_MS);

    // After it: no copy anywhere means back to the queue; an encoder is handed those shards again.
    await waitFor(
      async () => ((await Promise.all([i0!, i1!, i2!].map((i) => statusOf(s, id, r, i)))).every((st) => st !== 'ready') ? true : undefined),
      'the shards with no copy re-queued',
      GRACE_MS + 10_000,
    );
    expect(Date.now() - startedAt, 'not before the grace period').toBeGreaterThanOrEqual(GRACE_MS - 1000);
    expect(await statusOf(s, id, r, i3!), 'announced by its returning holder').toBe('ready');
    expect(await statusOf(s, id, r, i4!), 'cached').toBe('ready');
    await encodeUntilHandedOut(s, id, r, [i0!, i1!, i2!]);
  }, 120_000);

  it('with the cache off, a whole job whose encoder never returns is encoded again after the grace period', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-restart-'));
    dirs.push(dataDir);
    let s = await spawn(dataDir, ['--cache-enabled', 'false']);
    const id = await publish(s);
    const { peer, job } = await encodeOneJob(s);
    await killServer(s);
    peer.kill();
    procs.splice(0);
    s = await spawn(dataDir, ['--cache-enabled', 'false', '--restart-grace-ms', '1000']);
    for (const sh of job.shards) expect(await fetch(shardUrl(s, id, job.rendition, sh.index)).then((res) => res.status)).toBe(404);
    await encodeUntilHandedOut(
      s,
      id,
      job.rendition,
      job.shards.map((sh) => sh.index),
    );
  }, 120_000);
});
