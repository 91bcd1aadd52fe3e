/**
 * Cheaters against a real server, over real sockets and HTTP, with real
 * shards made by native ffmpeg (tests/harness/nativeEncoder.ts): encoders
 * that lie about their engine or build, pass one shard's bytes off as
 * another's, or come back under a fresh id after a quarantine; viewers that
 * file false reports. Each is caught or has no effect, and no honest encoder
 * is quarantined. (Padded shards: tests/server/intake.test.ts.)
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { encodeJob, nativeEncoder, NATIVE_ENGINE, type NativeEncoder } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import type { TestServer } from '../harness/testServer.ts';
import { mapOf, trustSuite } from '../harness/trustKit.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const { closers, start, publish } = trustSuite();
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Waits until every content is encoded, no check waits and no job runs. */
function settled(s: TestServer, ids: string[], ms = 120_000): Promise<ShardMap[]> {
  return waitFor(
    async () => {
      const maps = await Promise.all(ids.map((id) => mapOf(s, id)));
      const ok = maps.every((m) => m.status === 'ready') && s.pool.checks.length === 0 && s.pool.jobs.size === 0;
      return ok ? maps.map((m) => m.shardMap) : undefined;
    },
    'contents encoded and every check settled',
    ms,
  );
}

async function joinNative(s: TestServer, honesty: Parameters<typeof nativeEncoder>[1], claim?: Parameters<typeof nativeEncoder>[4]): Promise<NativeEncoder> {
  const e = await nativeEncoder(s.url, honesty, NATIVE_ENGINE, undefined, claim);
  closers.push(e.stop);
  return e;
}

describe('engine claims', () => {
  it('refuses a shard-ready that leaves out its engine, names another, or a build the encoder did not declare; accepts the true claim', async () => {
    // No sampling: this is about the claim alone. Refusals count as invalid shards; quarantine out of reach.
    const s = await start({ verifySampleRate: 0, verifyNewEncoderJobs: 0, quarantineAfterInvalid: 100 });
    const id = await publish(s);
    const e = await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: NATIVE_ENGINE, build: 'b1', codecs: ['h264'] }], maxJobs: 1 } });
    closers.push(() => e.close());
    const { job } = await e.next('job');
    expect(job.engine).toBe(NATIVE_ENGINE);
    const [bytes] = await encodeJob(s.url, job, 'honest');
    const key = { contentId: id, rendition: 'v', index: job.shards[0]!.index };
    const res = await fetch(`${s.url}/api/contents/${id}/shards/v/${key.index}`, {
      method: 'PUT',
      body: bytes as Uint8Array<ArrayBuffer>,
      headers: { Authorization: `Bearer ${job.uploadToken}` },
    });
    expect(res.status).toBe(200);
    const report = (engine?: string) =>
      e.send({ type: 'shard-ready', jobId: job.id, key, sha256: sha(bytes!), size: bytes!.byteLength, ...(engine !== undefined && { engine }) });
    const lies: [string | undefined, RegExp][] = [
      [undefined, /must name the engine that made the shard \(ffmpeg-native@b1\)/],
      ['webcodecs@b1', /engine "webcodecs@b1" is not the one job .* assigned/],
      [`${NATIVE_ENGINE}@b2`, /is not the one job/],
      [NATIVE_ENGINE, /is not the one job/],
    ];
    for (const [i, [claim, why]] of lies.entries()) {
      report(claim);
      expect((await e.next('shard-rejected')).reason).toMatch(why);
      expect(s.pool.health.get(e.peerId).invalid).toBe(i + 1);
      expect((await mapOf(s, id)).shardMap.shards[key.index]!.renditions.v!.status).not.toBe('ready');
    }
    report(`${NATIVE_ENGINE}@b1`);
    await e.next('shard-accepted');
    expect((await mapOf(s, id)).shardMap.shards[key.index]!.renditions.v).toMatchObject({ status: 'ready', engine: `${NATIVE_ENGINE}@b1` });
  });
});

describe('encoders that cheat', () => {
  it("passing one shard's bytes off as another's calls for a check, even of a trusted encoder: caught, and the right bytes replace them", async () => {
    // Nothing is sampled: only the duplicate can get the cheater checked.
    const s = await start({ verifySampleRate: 0, verifyNewEncoderJobs: 0, cacheEnabled: true });
    const id = await publish(s);
    const cheater = await joinNative(s, 'swap');
    await waitFor(() => cheater.jobs >= 1 || undefined, 'the cheater at work', 30_000);
    const honest = [await joinNative(s, 'honest'), await joinNative(s, 'honest')];
    const [map] = await settled(s, [id]);
    expect(cheater.jobs).toBeGreaterThan(0);
    expect(s.pool.health.isQuarantined(cheater.peer.peerId)).toBe(true);
    for (const h of honest) expect(s.pool.health.isQuarantined(h.peer.peerId)).toBe(false);
    // No shard holds a copy of another's bytes (the clip's pictures never repeat).
    const accepted = map!.shards.map((sh) => sh.renditions.v!.sha256!);
    expect(new Set(accepted).size).toBe(map!.shards.length);
    expect(s.pool.trust.get(cheater.peer.peerId).failed).toBeGreaterThan(0);
  }, 180_000);

  it('a quarantined cheater back under a fresh id is on probation again: caught when it names its engine, refused when it leaves it out', async () => {
    // One-second jobs: every encoder present when a content is published gets a job of it.
    const s = await start({ jobSeconds: 1, cacheEnabled: true, quarantineMs: 120_000 });
    const first = await publish(s);
    const cheater = await joinNative(s, 'black');
    await waitFor(() => cheater.jobs >= 1 || undefined, 'the cheater at work', 30_000);
    const honest = [await joinNative(s, 'honest'), await joinNative(s, 'honest')];
    await waitFor(() => s.pool.health.isQuarantined(cheater.peer.peerId) || undefined, 'the first identity caught', 60_000);
    await settled(s, [first]);
    cheater.stop();

    // Back without its resume secret: a fresh id, a fresh record, every job checked again.
    const again = await joinNative(s, 'black');
    expect(again.peer.peerId).not.toBe(cheater.peer.peerId);
    const second = await publish(s);
    await waitFor(() => s.pool.health.isQuarantined(again.peer.peerId) || undefined, 'the second identity caught', 60_000);
    await settled(s, [second]);
    again.stop();

    // Once more, this time leaving the engine out of its reports (on main: never checked at all).
    const silent = await joinNative(s, 'black', () => undefined);
    const third = await publish(s);
    await waitFor(() => s.pool.health.isQuarantined(silent.peer.peerId) || undefined, 'the third identity refused', 60_000);
    const maps = await settled(s, [first, second, third]);

    const cheats = [cheater, again, silent];
    expect(again.jobs + silent.jobs).toBeGreaterThan(0);
    for (const [i, map] of maps.entries()) {
      const id = [first, second, third][i]!;
      for (const sh of map.shards) {
        const accepted = sh.renditions.v!.sha256;
        for (const c of cheats) expect(accepted, `${id}/v/${sh.index}`).not.toBe(c.made.get(`${id}/v/${sh.index}`));
      }
    }
    expect(s.pool.trust.get(again.peer.peerId).failed).toBeGreaterThanOrEqual(1);
    expect(s.pool.health.get(silent.peer.peerId).quarantineReason).toMatch(/invalid shards/);
    for (const h of honest) expect(s.pool.health.isQuarantined(h.peer.peerId)).toBe(false);
  }, 300_000);
});

describe('viewers that file false reports', () => {
  it('2 reports about an honest holder only move it last for the reporter; a flood of 150 neither convicts nor hides the pool events', async () => {
    const s = await start({ cacheEnabled: false });
    const id = await publish(s);
    const honest = [await joinNative(s, 'honest'), await joinNative(s, 'honest')];
    const [map] = await settled(s, [id]);
    // Shards the cross-checks left with two holders: the encoder and its verifier.
    const holdersOf = (index: number) => [...(s.pool.holders.get(`${id}/v/${index}`) ?? [])];
    const twice = map!.shards.map((sh) => sh.index).filter((i) => holdersOf(i).length === 2);
    expect(twice.length).toBeGreaterThan(1);
    const [k0, k1] = twice as [number, number];
    const accused = holdersOf(k0)[0]!;
    let convictions = 0;
    s.pool.on('encoder-convicted', () => convictions++);
    const counted = new Map<string, number>();
    s.pool.on('peer-reported', (e) => counted.set(e.reporter, (counted.get(e.reporter) ?? 0) + 1));

    const locate = async (p: WsPeer, index: number) => {
      const requestId = Math.floor(Math.random() * 1e9);
      p.send({ type: 'locate', requestId, contentId: id, from: index, count: 1, renditions: ['v'] });
      return (await p.next('holders', (m) => m.requestId === requestId)).shards[0]!.peers;
    };
    const forger = await WsPeer.viewer(s.url);
    const bystander = await WsPeer.viewer(s.url);
    const crowd = await Promise.all(Array.from({ length: 30 }, () => WsPeer.viewer(s.url)));
    for (const p of [forger, bystander, ...crowd]) closers.push(() => p.close());
    // What /api/pool shows before any report: all of it must still show after them.
    type Logged = { at: number; type: string };
    const poolEvents = async () => ((await (await fetch(`${s.url}/api/pool`)).json()) as { events: Logged[] }).events;
    const stamp = (e: Logged) => `${e.at} ${e.type}`;
    const eventsBefore = (await poolEvents()).map(stamp);
    expect(eventsBefore.length).toBeGreaterThan(30);
    const report = (p: WsPeer, peerId: string, index: number) =>
      p.send({ type: 'report-peer', peerId, key: { contentId: id, rendition: 'v', index }, reason: 'hash mismatch' });

    // Two reports about shards the accused really holds, in good copies.
    report(forger, accused, k0);
    report(forger, accused, k1);
    expect((await locate(forger, k0)).at(-1)).toBe(accused);
    expect((await locate(forger, k1)).at(-1)).toBe(accused);
    // Only for the reporter: the accused keeps its place for everyone else, and its record is clean.
    expect(await locate(bystander, k0)).toContain(accused);
    expect(holdersOf(k0)).toContain(accused);
    expect(s.pool.health.get(accused).invalid).toBe(0);
    expect(s.pool.counters.peerReports).toBe(2);

    // 150 from that viewer, about every holder of every shard: it counts within its budget only.
    const targets = map!.shards.flatMap((sh) => holdersOf(sh.index).map((p) => [p, sh.index] as const));
    for (let i = 2; i < 150; i++) report(forger, ...targets[i % targets.length]!);
    await locate(forger, k0);
    expect(counted.get(forger.peerId)).toBeGreaterThanOrEqual(s.config.reportsPerMinute);
    expect(counted.get(forger.peerId)).toBeLessThanOrEqual(s.config.reportsPerMinute + 1); // a refill while the test runs
    // And 150 from a crowd, 30 viewers with 5 each (within their budgets, so all counted).
    for (const [n, v] of crowd.entries()) for (let i = 0; i < 5; i++) report(v, ...targets[(n * 5 + i) % targets.length]!);
    // Every report is read once its sender's next message is answered.
    for (const v of crowd) await locate(v, k0);
    for (const v of crowd) expect(counted.get(v.peerId)).toBe(5);

    const eventsAfter = await poolEvents();
    expect(eventsAfter.filter((e) => e.type === 'peer-reported').length).toBeLessThanOrEqual(10);
    // The pool's own events are all still there.
    const after = new Set(eventsAfter.map(stamp));
    expect(eventsBefore.filter((e) => !after.has(e) && !e.endsWith('peer-reported'))).toEqual([]);
    // No one convicted or quarantined, and every holder still holds.
    await new Promise((r) => setTimeout(r, 500));
    expect(convictions).toBe(0);
    for (const h of honest) {
      expect(s.pool.health.isQuarantined(h.peer.peerId)).toBe(false);
      expect(s.pool.health.get(h.peer.peerId).invalid).toBe(0);
    }
    for (const [p, index] of targets) expect(holdersOf(index)).toContain(p);
  }, 180_000);
});
