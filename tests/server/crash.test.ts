/**
 * Crash safety: the real server, as a child process with its own DATA_DIR,
 * is SIGKILLed at random moments while uploads arrive and encoders report
 * accepted shards (with snapshots rewritten every few ms), then the real
 * process is started again on the same DATA_DIR. Every HTTP answer an
 * uploader gets during a round must be a 201: only a connection error caused
 * by the kill may replace it. After every restart, seen through the restarted
 * server's HTTP API and the directory listing: each content is whole or
 * absent, no staging directory or temp file is left, every accepted-shard log
 * parses, and nothing acknowledged (a 201 for an upload, a shard-accepted for
 * a shard) is lost.
 *
 * Two cases: a fast byteless one (simulated encoders report hashes, byte
 * check and cross-checks off) with many kills, and one with real parts (byte
 * check and shard cache on; native ffmpeg encodes real shards that are
 * uploaded with the job's token like a tab does), after which every
 * acknowledged shard must still be accepted and have a copy (a cached one
 * whose sha256 matches the map, or a holder: a tab that came back within the
 * restart grace period and announced it) or be re-queued. Before the last
 * restart one cached copy is torn (left in a temp file), one corrupted in
 * place and one deleted while a returning tab still holds it.
 *
 * Rounds: SHARDCAST_CRASH_ROUNDS (default 6; the real-parts case runs 3).
 * Seed: SHARDCAST_CRASH_SEED (printed before the first round, so a failing
 * run can be repeated with it).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { nativeEncoder, type NativeEncoder } from '../harness/nativeEncoder.ts';
import { autoEncode, waitFor } from '../harness/poolKit.ts';
import { isKillError, killServer, spawnServer, stopServer, type ServerProcess } from '../harness/serverProcess.ts';
import { fakeHash, WsPeer } from '../harness/wsPeer.ts';
import { startTestServer, upload } from '../harness/testServer.ts';
import type { Job } from '../../src/shared/protocol.ts';

const ROUNDS = Number(process.env.SHARDCAST_CRASH_ROUNDS ?? 6);
const REAL_ROUNDS = 3;
const SEED = Number(process.env.SHARDCAST_CRASH_SEED ?? Date.now() % 2 ** 31);
/** A small deterministic generator, so a failing run can be repeated with its seed. */
function lcg(s: number): () => number {
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}
// One stream per use: how many uploads fit in a round varies from run to run, and must not move the kills.
const killAt = lcg(SEED);
const clipPick = lcg(SEED + 1);
const sourcePick = lcg(SEED + 2);

const TOKEN = 'crash-admin-token';
const COMMON = ['--admin-token', TOKEN, '--snapshot-delay-ms', '5', '--heartbeat-ms', '200', '--max-concurrent-uploads', '8'];
// The simulated encoder reports hashes without bytes (poolKit's BYTELESS, as flags). Its holdings die
// with each round and nothing is cached, so a restart would re-queue every shard once the heartbeat
// timeout passes (see the real-parts case); a timeout longer than any round keeps this case on the log itself.
const BYTELESS_ARGS = [
  ...COMMON,
  '--heartbeat-timeout-ms',
  '60000',
  '--restart-grace-ms',
  '60000',
  '--cache-enabled',
  'false',
  '--verify-shard-bytes',
  'false',
  '--verify-sample-rate',
  '0',
  '--verify-new-encoder-jobs',
  '0',
];
// Server defaults otherwise: byte check on, cache on, cross-checks as configured out of the box. A short
// grace period: 3 s after a restart, shards that no returning tab announced and the cache lacks are re-queued.
const REAL_GRACE_MS = 3000;
const REAL_ARGS = [
  ...COMMON,
  '--heartbeat-timeout-ms',
  '2000',
  '--restart-grace-ms',
  String(REAL_GRACE_MS),
  '--cache-enabled',
  'true',
  '--verify-shard-bytes',
  'true',
];

let clips: Uint8Array[];
const dirs: string[] = [];
let srv: ServerProcess | undefined;
const newDataDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-crash-'));
  dirs.push(d);
  return d;
};

beforeAll(async () => {
  // First, before any round: a failure below can always be replayed.
  console.log(`crash: seed ${SEED} (repeat with SHARDCAST_CRASH_SEED=${SEED})`);
  clips = [new Uint8Array(fs.readFileSync(await fixture('av-2997'))), new Uint8Array(fs.readFileSync(await fixture('mkv')))];
});

afterAll(async () => {
  if (srv) await stopServer(srv);
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Acked {
  contents: Set<string>;
  /** "content/rendition/index" -> what the acknowledgement promised. */
  shards: Map<string, { sha256: string; size?: number }>;
}

const listContents = async (s: ServerProcess) =>
  ((await (await fetch(`${s.url}/api/contents`)).json()) as { contents: { id: string; status: string; duration: number; shards: number; total: number }[] })
    .contents;

const getMap = async (s: ServerProcess, id: string): Promise<ShardMap> => {
  const res = await fetch(`${s.url}/api/contents/${id}`);
  expect(res.status, `GET /api/contents/${id}`).toBe(200);
  return ((await res.json()) as { shardMap: ShardMap }).shardMap;
};

/**
 * What a freshly restarted server must show: its API lists exactly the
 * contents on disk, every acknowledged one among them and whole; its start
 * cleared every staging directory and temp file; every log is whole lines.
 * Returns the acknowledged shards it found accepted, with their map entries.
 */
async function checkRestarted(
  s: ServerProcess,
  dataDir: string,
  startedAt: number,
  acked: Acked,
  sampleSources: number,
  requeued = false,
): Promise<{ contents: number; shards: number }> {
  expect(
    s.tail.filter((l) => /skipped unreadable content/.test(l)),
    `a content was left half-written (seed ${SEED})`,
  ).toEqual([]);
  const contentsDir = path.join(dataDir, 'contents');
  const listed = await listContents(s);
  // Listed after the server started: what its start left behind.
  const onDisk = fs.readdirSync(contentsDir);
  expect(
    onDisk.filter((n) => n.startsWith('.')),
    'staging directories left',
  ).toEqual([]);
  expect(fs.readdirSync(path.join(dataDir, 'tmp')), 'temp uploads left').toEqual([]);
  expect(listed.map((c) => c.id).sort()).toEqual([...onDisk].sort());
  for (const id of acked.contents) {
    const c = listed.find((x) => x.id === id);
    expect(c, `acknowledged content ${id} lost (seed ${SEED})`).toBeDefined();
    // Whole: a map with shards over the whole duration, every shard of every rendition present.
    expect(c!.duration).toBeGreaterThan(0);
    expect(c!.shards).toBeGreaterThan(0);
    expect(c!.total).toBe(c!.shards * (await getMap(s, id)).renditions.length);
  }
  // The source of a few acknowledged contents is read back through the API (a remux of its first second).
  const ackedIds = [...acked.contents];
  for (let i = 0; i < Math.min(sampleSources, ackedIds.length); i++) {
    const id = ackedIds[Math.floor(sourcePick() * ackedIds.length)]!;
    const res = await fetch(`${s.url}/api/contents/${id}/source?start=0&end=1&tracks=video`);
    expect(res.status, `source of ${id}`).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(1000);
  }
  let shards = 0;
  for (const id of onDisk) {
    const dir = path.join(contentsDir, id);
    const files = fs.readdirSync(dir);
    // The restarted server may be writing a snapshot right now; a temp file from before the kill is a leftover.
    const leftovers = files.filter((f) => f.includes('.tmp-') && (fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.mtimeMs ?? Infinity) < startedAt);
    expect(leftovers, `temp files in ${id}`).toEqual([]);
    expect(files).toEqual(expect.arrayContaining(['meta.json', 'map.json']));
    expect(files.some((f) => f.startsWith('source.'))).toBe(true);
    for (const log of files.filter((f) => f.startsWith('accepted.jsonl') && !f.includes('.tmp-'))) {
      let text: string;
      try {
        text = fs.readFileSync(path.join(dir, log), 'utf8');
      } catch {
        continue; // rotated away by a snapshot between readdir and read
      }
      // Torn last lines are cut off at start, so what is left is whole lines only.
      if (text) expect(text.endsWith('\n'), `${id}/${log} ends mid-line`).toBe(true);
      for (const line of text.split('\n').filter(Boolean)) expect(() => JSON.parse(line) as unknown).not.toThrow();
    }
    const map = await getMap(s, id);
    for (const sh of map.shards)
      for (const [r, st] of Object.entries(sh.renditions)) {
        const key = `${id}/${r}/${sh.index}`;
        const a = acked.shards.get(key);
        if (!a) continue;
        // `requeued`: a restart may have re-queued it since (no copy left anywhere); it keeps its accepted hash
        // so that a tab coming back with those bytes restores it.
        const status = requeued && st.status !== 'ready' ? 'pending' : 'ready';
        expect({ key, status: st.status, sha256: st.sha256, size: a.size === undefined ? undefined : st.size }, `seed ${SEED}`).toEqual({
          key,
          status,
          sha256: a.sha256,
          size: a.size,
        });
        shards++;
      }
  }
  return { contents: onDisk.length, shards };
}

/**
 * Keeps uploading until the kill. Each answer must be a 201 (an acknowledgement);
 * a fetch may fail instead only after the kill and only with a connection error.
 * Problems are collected, not thrown, so the round still ends with the kill.
 */
async function uploader(
  s: ServerProcess,
  pick: () => Uint8Array,
  round: { killed: boolean; started: number },
  acked: Acked,
  problems: string[],
): Promise<void> {
  while (!round.killed) {
    round.started++;
    let status: number | undefined;
    try {
      const res = await fetch(`${s.url}/api/contents`, { method: 'POST', body: pick() as unknown as BodyInit, headers: { Authorization: `Bearer ${TOKEN}` } });
      status = res.status;
      const text = await res.text();
      if (res.status !== 201) {
        problems.push(`upload answered ${res.status}: ${text.slice(0, 300)}`);
        return;
      }
      acked.contents.add((JSON.parse(text) as { id: string }).id);
    } catch (e) {
      // After a 201 arrived, a cut body means the id never reached us: not acknowledged, and fine.
      if (!round.killed || !isKillError(e))
        problems.push(
          `upload ${status === undefined ? 'failed' : `answered ${status}, then failed`} ${round.killed ? 'after' : 'before'} the kill: ${String(e)} (${String((e as Error).cause)})`,
        );
      return;
    }
  }
}

/** Records every shard-accepted the server sends this socket (the acknowledgement of a shard). */
function recordAcks(ws: WsPeer['ws'], acked: Acked, sizeOf?: (key: string) => number): () => number {
  let n = 0;
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as { type: string; key?: { contentId: string; rendition: string; index: number }; sha256?: string };
    if (m.type !== 'shard-accepted' || !m.key) return;
    const key = `${m.key.contentId}/${m.key.rendition}/${m.key.index}`;
    acked.shards.set(key, { sha256: m.sha256!, ...(sizeOf && { size: sizeOf(key) }) });
    n++;
  });
  return () => n;
}

describe('crash safety', () => {
  it(`a server killed at random moments (${ROUNDS} times) restarts consistent and loses nothing it acknowledged`, async () => {
    const dataDir = newDataDir();
    const acked: Acked = { contents: new Set(), shards: new Map() };
    const problems: string[] = [];
    const kills: number[] = [];
    let uploadsStarted = 0;
    let last = { contents: 0, shards: 0 };
    for (let round = 0; round <= ROUNDS; round++) {
      const startedAt = Date.now();
      srv = await spawnServer(dataDir, BYTELESS_ARGS);
      last = await checkRestarted(srv, dataDir, startedAt, acked, round === ROUNDS ? 3 : 0);
      if (round === ROUNDS) break;
      const s = srv;
      // An encoder that finishes every job at once; poolKit reports size 1000 + index for each shard.
      const enc = await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: 'test', codecs: ['h264', 'aac'] }], maxJobs: 4 } });
      const jobs: Job[] = [];
      void autoEncode(enc, jobs);
      recordAcks(enc.ws, acked, (key) => 1000 + Number(key.split('/').at(-1)));
      // Uploads keep arriving until the kill; each 201 is an acknowledgement.
      const state = { killed: false, started: 0 };
      const first = uploader(s, () => clips[Math.floor(clipPick() * clips.length)]!, state, acked, problems);
      const pause = killAt() * 200;
      const second = new Promise((r) => setTimeout(r, pause)).then(() => uploader(s, () => clips[1]!, state, acked, problems));
      const delay = 100 + killAt() * 1500;
      kills.push(Math.round(delay));
      await new Promise((r) => setTimeout(r, delay));
      state.killed = true;
      await killServer(s);
      enc.kill();
      await Promise.all([first, second]);
      uploadsStarted += state.started;
      srv = undefined;
      expect(problems, `round ${round}, seed ${SEED}`).toEqual([]);
    }
    await stopServer(srv!);
    srv = undefined;
    console.log(
      `crash (seed ${SEED}): ${ROUNDS} SIGKILLs at ${kills.join(', ')} ms; ${uploadsStarted} uploads started, ${acked.contents.size} acknowledged; ` +
        `${acked.shards.size} shard acceptances acknowledged; after the last restart ${last.contents} contents on disk, ${last.shards} acknowledged shards checked ready`,
    );
    expect(acked.contents.size).toBeGreaterThan(0);
    expect(acked.shards.size).toBeGreaterThan(0);
  }, 600_000);

  it(`with real parts (byte check and cache on, native ffmpeg shards), ${REAL_ROUNDS} kills lose no acknowledged shard: each keeps a copy (cache or a returning holder) or is re-queued`, async () => {
    const dataDir = newDataDir();
    const acked: Acked = { contents: new Set(), shards: new Map() };
    const kills: number[] = [];
    const problems: string[] = [];
    for (let round = 0; round < REAL_ROUNDS; round++) {
      const startedAt = Date.now();
      srv = await spawnServer(dataDir, REAL_ARGS);
      await checkRestarted(srv, dataDir, startedAt, acked, 0, true);
      const s = srv;
      // A new content each round, so that every round has work left to be killed in (the native encoder is quick).
      const res = await fetch(`${s.url}/api/contents`, {
        method: 'POST',
        body: clips[0] as unknown as BodyInit,
        headers: { Authorization: `Bearer ${TOKEN}` },
      });
      expect(res.status).toBe(201);
      acked.contents.add(((await res.json()) as { id: string }).id);
      // Every answer to its uploads must be a 200 while the server lives; after the kill, only failures.
      const round_ = { killed: false };
      const enc: NativeEncoder = await nativeEncoder(s.url, 'honest', undefined, (what, answer) => {
        if (typeof answer === 'number' ? answer !== 200 : !round_.killed)
          problems.push(`${what}: ${String(answer)} ${round_.killed ? 'after' : 'before'} the kill`);
      });
      const acksNow = recordAcks(enc.peer.ws, acked);
      // Killed while shards are being accepted: some time after this round's first acknowledgement.
      await waitFor(() => acksNow() > 0 || undefined, `a shard accepted in round ${round}`, 120_000);
      const delay = killAt() * 1500;
      kills.push(Math.round(delay));
      await new Promise((r) => setTimeout(r, delay));
      round_.killed = true;
      await killServer(s);
      enc.peer.kill();
      srv = undefined;
      expect(problems, `round ${round}, seed ${SEED}`).toEqual([]);
    }
    // A kill between an acknowledgement and the cache's rename leaves the shard's bytes in a temp file only.
    // The kills above may or may not have hit that moment; here it is made certain for one shard. A second
    // cached copy is corrupted in place (a disk error), and a third deleted while a tab that comes back holds it.
    const cacheDir = path.join(dataDir, 'cache');
    const inCache = [...acked.shards.keys()].filter((k) => fs.existsSync(path.join(cacheDir, `${k}.mp4`)));
    expect(inCache.length, 'acknowledged shards in the cache').toBeGreaterThanOrEqual(3);
    const [torn, corrupt, held] = [...inCache].sort(() => sourcePick() - 0.5) as [string, string, string];
    const tornTemp = path.join(cacheDir, `${torn}.mp4.tmp-0badf00d`);
    fs.renameSync(path.join(cacheDir, `${torn}.mp4`), tornTemp);
    const corruptFile = path.join(cacheDir, `${corrupt}.mp4`);
    const bytes = fs.readFileSync(corruptFile);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    fs.writeFileSync(corruptFile, bytes);
    fs.rmSync(path.join(cacheDir, `${held}.mp4`));
    // The real restart: a new process on the same DATA_DIR.
    const startedAt = Date.now();
    srv = await spawnServer(dataDir, REAL_ARGS);
    const s = srv;
    // A tab comes back within the grace period with the bytes it still holds (it offers no codec of these jobs).
    const [heldId, heldRendition, heldIndex] = held.split('/') as [string, string, string];
    const heldKey = { contentId: heldId, rendition: heldRendition, index: Number(heldIndex) };
    const returning = await WsPeer.encoder(s.url, {
      capabilities: { engines: [{ name: 'test', codecs: ['vp9'] }], maxJobs: 1 },
      holdings: [{ key: heldKey, sha256: acked.shards.get(held)!.sha256, size: 1 }],
    });
    expect(Date.now() - startedAt, 'the tab came back within the grace period').toBeLessThan(REAL_GRACE_MS);
    await checkRestarted(s, dataDir, startedAt, acked, 1, true);
    const maps = new Map<string, ShardMap>();
    for (const id of acked.contents) maps.set(id, await getMap(s, id));
    const uncached: string[] = [];
    for (const [key, a] of acked.shards) {
      const [id, rendition, index] = key.split('/');
      const st = maps.get(id!)!.shards[Number(index)]!.renditions[rendition!]!;
      const res = await fetch(`${s.url}/api/contents/${id}/shards/${rendition}/${index}`);
      if (res.status === 404) {
        if (key !== held) uncached.push(key);
        continue;
      }
      expect(res.status, key).toBe(200);
      const got = new Uint8Array(await res.arrayBuffer());
      // The copy is the accepted variant: same bytes as the encoder's acknowledged upload.
      expect({ key, sha256: createHash('sha256').update(got).digest('hex'), size: got.byteLength }).toEqual({ key, sha256: a.sha256, size: st.size });
    }
    expect(uncached, 'the shard whose cache write was cut').toContain(torn);
    expect(uncached, 'the shard whose cached copy was corrupted').toContain(corrupt);
    expect(fs.existsSync(tornTemp), 'the cache temp file cleared at start').toBe(false);
    expect(fs.existsSync(corruptFile), 'the corrupt copy removed at start').toBe(false);
    // An acknowledged shard the kill kept out of the cache (its encoder gone too) has no copy anywhere:
    // once returning tabs had their chance to announce it, it must go back to the queue.
    {
      await waitFor(
        async () => {
          for (const id of acked.contents) maps.set(id, await getMap(s, id));
          return (
            uncached.every((key) => {
              const [id, rendition, index] = key.split('/');
              return maps.get(id!)!.shards[Number(index)]!.renditions[rendition!]!.status !== 'ready';
            }) || undefined
          );
        },
        `uncached acknowledged shards ${uncached.join(', ')} re-queued (seed ${SEED})`,
        30_000,
      );
    }
    // Past the grace period, the one a returning tab announced keeps its copy: still accepted, and located there.
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(REAL_GRACE_MS);
    expect(maps.get(heldId)!.shards[heldKey.index]!.renditions[heldRendition]!).toMatchObject({ status: 'ready', sha256: acked.shards.get(held)!.sha256 });
    const viewer = await WsPeer.viewer(s.url);
    viewer.send({ type: 'locate', requestId: 1, contentId: heldId, from: heldKey.index, count: 1, renditions: [heldRendition] });
    expect((await viewer.next('holders')).shards.find((x) => x.index === heldKey.index)?.peers).toEqual([returning.peerId]);
    viewer.kill();
    returning.kill();
    await stopServer(s);
    srv = undefined;
    console.log(
      `crash with real parts (seed ${SEED}): ${REAL_ROUNDS} SIGKILLs at ${kills.join(', ')} ms after a round's first acceptance; ` +
        `${acked.shards.size} shards acknowledged; after the restart ${acked.shards.size - uncached.length - 1} served from the cache with the accepted sha256, 1 held by a returning tab, ${uncached.length} re-queued`,
    );
    expect(acked.shards.size).toBeGreaterThan(0);
  }, 600_000);
});

describe('accepted-shard log after a crash', () => {
  it('cuts a torn last line, so the next acknowledged shard is not glued to it and lost', async () => {
    let s = await startTestServer();
    try {
      const id = ((await upload(s.url, clips[0]!)).json as { id: string }).id;
      const rendition = s.store.get(id)!.map.renditions[0]!.id;
      await s.store.flush();
      const log = path.join(s.dataDir, 'contents', id, 'accepted.jsonl');
      s = await s.restart();
      // What a kill in the middle of appendFileSync would leave.
      fs.writeFileSync(log, `{"rendition":"${rendition}","index":0,"sha256":"${fakeHash('a')}","si`);
      s = await s.restart({ snapshotDelayMs: 60_000 });
      s.store.accept(id, rendition, 1, { sha256: fakeHash('b'), size: 10 });
      // The log alone must hold it (a kill now would leave no snapshot): every line whole.
      const lines = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
      expect(lines.map((l) => (JSON.parse(l) as { index: number }).index)).toEqual([1]);
      s = await s.restart({ snapshotDelayMs: 60_000 });
      const st = s.store.get(id)!.map.shards[1]!.renditions[rendition]!;
      expect({ status: st.status, sha256: st.sha256 }).toEqual({ status: 'ready', sha256: fakeHash('b') });
      expect(s.store.get(id)!.map.shards[0]!.renditions[rendition]!.status).toBe('pending');
    } finally {
      await s.destroy();
    }
  });

  it('a snapshot killed after folding the logs keeps the order of acceptances: after a real restart the newer variant wins', async () => {
    const dataDir = newDataDir();
    // A long snapshot delay: snapshots run only when this test lets them.
    const args = (delayMs: number) => ['--admin-token', TOKEN, '--snapshot-delay-ms', String(delayMs), '--cache-enabled', 'false'];
    let s = await spawnServer(dataDir, args(60_000));
    const res = await fetch(`${s.url}/api/contents`, { method: 'POST', body: clips[0] as unknown as BodyInit, headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(201);
    const id = ((await res.json()) as { id: string }).id;
    const rendition = (await getMap(s, id)).renditions[0]!.id;
    await stopServer(s);
    const dir = path.join(dataDir, 'contents', id);
    const line = (h: string) => `${JSON.stringify({ rendition, index: 2, sha256: fakeHash(h), size: 10 })}\n`;
    // A snapshot rotated the log to .old and was killed before map.json was rewritten;
    // then the shard was accepted again (a re-encode) into the new log.
    fs.writeFileSync(path.join(dir, 'accepted.jsonl.old'), line('old'));
    fs.writeFileSync(path.join(dir, 'accepted.jsonl'), line('new'));
    s = srv = await spawnServer(dataDir, args(1500));
    expect((await getMap(s, id)).shards[2]!.renditions[rendition]!.sha256).toBe(fakeHash('new'));
    // The replay schedules a snapshot (1.5 s later). It folds .old and the log into .old, then fails
    // writing map.json (a directory in its place): the state a kill at that point leaves.
    const mapJson = path.join(dir, 'map.json');
    const before = fs.readFileSync(mapJson);
    fs.rmSync(mapJson);
    fs.mkdirSync(path.join(mapJson, 'x'), { recursive: true });
    await waitFor(() => s.stderr.some((l) => l.includes(`snapshot of ${id} failed`)) || undefined, 'the snapshot to fail', 30_000);
    await killServer(s);
    expect(fs.existsSync(path.join(dir, 'accepted.jsonl')), 'the snapshot folded the log into .old').toBe(false);
    fs.rmSync(mapJson, { recursive: true });
    fs.writeFileSync(mapJson, before); // the rename never happened: the old snapshot is what a kill leaves
    s = srv = await spawnServer(dataDir, args(60_000));
    const st = (await getMap(s, id)).shards[2]!.renditions[rendition]!;
    expect({ status: st.status, sha256: st.sha256 }).toEqual({ status: 'ready', sha256: fakeHash('new') });
    await stopServer(s);
    srv = undefined;
  }, 120_000);
});
