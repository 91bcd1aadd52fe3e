/**
 * Verification of untrusted encoders against a real server, with real shards
 * made by native ffmpeg (tests/harness/nativeEncoder.ts): the structure check
 * before acceptance, and cheaters caught by cross-checks, quarantined, and
 * their shards encoded again.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fixture } from '../harness/fixtures.ts';
import { encodeJob, nativeEncoder, SLEEPER_HONEST_JOBS, type Honesty, type NativeEncoder } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { upload, type TestServer } from '../harness/testServer.ts';
import { mapOf, trustSuite } from '../harness/trustKit.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const { servers, closers, start, publish } = trustSuite();

const put = (s: TestServer, key: { contentId: string; rendition: string; index: number }, body: Uint8Array, token?: string) =>
  fetch(`${s.url}/api/contents/${key.contentId}/shards/${key.rendition}/${key.index}`, {
    method: 'PUT',
    body: body as Uint8Array<ArrayBuffer>,
    ...(token !== undefined && { headers: { Authorization: `Bearer ${token}` } }),
  });

describe('the structure check before acceptance', () => {
  it('accepts only uploaded, checked bytes; refuses bad tokens, broken and wrong shards with the reason', async () => {
    // Two strikes below would quarantine this encoder (and cancel its job) by default.
    const s = await start({ verifySampleRate: 0, verifyNewEncoderJobs: 0, quarantineAfterInvalid: 10 });
    const id = await publish(s);
    const e = await WsPeer.encoder(s.url);
    closers.push(() => e.close());
    const { job } = await e.next('job');
    expect(job.upload).toBe(true);
    expect(job.uploadToken).toBeDefined();
    const shards = await encodeJob(s.url, job, 'honest');
    const key = (i: number) => ({ contentId: id, rendition: job.rendition, index: job.shards[i]!.index });
    const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

    // A report without the bytes is refused, and so is an upload without the job's token.
    e.send({ type: 'shard-ready', jobId: job.id, key: key(0), sha256: sha(shards[0]!), size: shards[0]!.byteLength });
    expect((await e.next('shard-rejected')).reason).toMatch(/not uploaded/);
    expect((await put(s, key(0), shards[0]!)).status).toBe(401);
    const forged = await put(s, key(0), shards[0]!, 'x'.repeat(24));
    expect([forged.status, ((await forged.json()) as { error: { code: string } }).error.code]).toEqual([403, 'bad-upload-token']);
    // Bytes that are no MP4 at all.
    const other = await put(s, key(0), new Uint8Array(64).fill(7), job.uploadToken);
    expect(other.status).toBe(422);
    const rejected = await e.next('shard-rejected');
    expect(rejected.reason).toMatch(/structure check failed \(not-mp4\)/);
    expect(s.pool.health.get(e.peerId).invalid).toBe(1);

    // The real bytes: checked, accepted, and kept in the cache with the accepted hash.
    for (const [i, b] of shards.entries()) {
      const r = await put(s, key(i), b, job.uploadToken);
      expect(r.status, await r.clone().text()).toBe(200);
      expect(((await r.json()) as { sha256: string }).sha256).toBe(sha(b));
      // Claiming other bytes than those uploaded is lying: rejected.
      if (i === 0) {
        e.send({ type: 'shard-ready', jobId: job.id, key: key(i), sha256: 'f'.repeat(64), size: b.byteLength, engine: job.engine! });
        expect((await e.next('shard-rejected')).reason).toMatch(/differs from the uploaded bytes/);
        expect(s.pool.health.get(e.peerId).invalid).toBe(2);
        await put(s, key(i), b, job.uploadToken);
      }
      e.send({ type: 'shard-ready', jobId: job.id, key: key(i), sha256: sha(b), size: b.byteLength, engine: job.engine! });
      await e.next('shard-accepted', (m) => m.key.index === key(i).index);
    }
    const { shardMap } = await mapOf(s, id);
    for (const [i, b] of shards.entries()) expect(shardMap.shards[key(i).index]!.renditions.v!.sha256).toBe(sha(b));
    await waitFor(async () => {
      const c = await fetch(`${s.url}/api/contents/${id}/shards/v/${key(shards.length - 1).index}`);
      return c.status === 200 ? sha(new Uint8Array(await c.arrayBuffer())) === sha(shards[shards.length - 1]!) : undefined;
    }, 'the cached copy');
    const c = s.pool.counters;
    expect(c.intakeChecks).toBeGreaterThanOrEqual(shards.length);
    console.log(
      `structure check: ${c.intakeChecks} shards, ${(c.intakeCheckMs / c.intakeChecks).toFixed(2)} ms and ${Math.round(c.intakeBytes / c.intakeChecks)} bytes per shard`,
    );
  });

  it('a shard of the wrong size fails the check and counts toward quarantine', async () => {
    const s = await start({ verifySampleRate: 0, verifyNewEncoderJobs: 0, quarantineAfterInvalid: 2 });
    const id = await publish(s);
    const e = await WsPeer.encoder(s.url);
    closers.push(() => e.close());
    const { job } = await e.next('job');
    // Structurally a fine shard, but of 160x90 where the map asks 320x180.
    const small = await encodeJob(s.url, { ...job, video: { ...job.video!, width: 160, height: 90 } }, 'honest');
    for (const i of [0, 1]) {
      const r = await put(s, { contentId: id, rendition: job.rendition, index: job.shards[i]!.index }, small[i]!, job.uploadToken);
      expect(r.status).toBe(422);
      expect((await e.next('shard-rejected')).reason).toMatch(/wrong-size.*expected 320x180, got 160x90/);
    }
    await waitFor(() => s.pool.health.isQuarantined(e.peerId) || undefined, 'quarantine');
  });
});

describe('cross-checks', () => {
  /**
   * One round: a cheater joins first and takes work, two honest encoders join
   * after. Returns whether the cheater was caught, and what was accepted of it.
   */
  async function round(honesty: Honesty): Promise<{ caught: boolean; badAccepted: number; badLeft: number; revoked: number }> {
    const s = await start({ cacheEnabled: true });
    const id = await publish(s);
    const badAccepted = new Set<string>();
    let revoked = 0;
    const cheater = await nativeEncoder(s.url, honesty);
    closers.push(cheater.stop);
    s.pool.on('shard-accepted', (a) => {
      if (a.peerId === cheater.peer.peerId) badAccepted.add(`${a.key.contentId}/${a.key.rendition}/${a.key.index}`);
    });
    s.pool.on('shard-revoked', (r) => {
      if (r.peerId === cheater.peer.peerId) revoked++;
    });
    // Each shard's history, for the message of a failed cache check below.
    const history = new Map<number, string[]>();
    const note = (i: number, x: string) => history.set(i, [...(history.get(i) ?? []), x]);
    const who = (p: string) => (p === cheater.peer.peerId ? 'the cheater' : p);
    s.pool.on('shard-revoked', (r) => note(r.key.index, `revoked from ${who(r.peerId)} (${r.reason})`));
    s.pool.on('shard-accepted', (a) =>
      note(a.key.index, `accepted ${a.sha256.slice(0, 8)} from ${who(a.peerId)}${a.bytes ? ' with bytes' : ' without bytes'}`),
    );
    // Let the cheater take a job or two before anyone else is there.
    await waitFor(() => cheater.jobs >= 1 || undefined, 'the cheater at work', 30_000);
    const honest: NativeEncoder[] = [];
    for (let i = 0; i < 2; i++) {
      const h = await nativeEncoder(s.url, 'honest');
      closers.push(h.stop);
      honest.push(h);
    }
    const map = await waitFor(
      async () => {
        const c = await mapOf(s, id);
        return c.status === 'ready' && s.pool.checks.length === 0 && s.pool.jobs.size === 0 ? c.shardMap : undefined;
      },
      'content encoded and every check settled',
      120_000,
    );
    // The honest encoders agree with each other: whatever they made is the truth.
    const truth = new Map<string, string>();
    for (const h of honest) for (const [k, v] of h.made) truth.set(k, v);
    let badLeft = 0;
    for (const sh of map.shards) {
      const k = `${id}/v/${sh.index}`;
      const accepted = sh.renditions.v!.sha256!;
      if (truth.has(k) ? accepted !== truth.get(k) : accepted === cheater.made.get(k)) badLeft++;
    }
    const caught = s.pool.health.isQuarantined(cheater.peer.peerId);
    if (caught) {
      // Nothing of the cheater's is offered any more.
      expect([...s.pool.holders.values()].some((set) => set.has(cheater.peer.peerId))).toBe(false);
      // The server's cache, read as a viewer reads it, holds every shard, each the accepted variant,
      // and that variant is the honest encoders' (the cheater's copies left it when revoked).
      const readCache = () =>
        Promise.all(
          map.shards.map(async (sh) => {
            const r = await fetch(`${s.url}/api/contents/${id}/shards/v/${sh.index}`);
            return r.status === 200
              ? createHash('sha256')
                  .update(new Uint8Array(await r.arrayBuffer()))
                  .digest('hex')
              : undefined;
          }),
        );
      const cached = await waitFor(
        async () => {
          const got = await readCache();
          return got.every((h) => h !== undefined) ? got : undefined;
        },
        'every shard in the cache',
        30_000,
      ).catch(async () => readCache());
      const missing = cached.flatMap((h, i) => (h ? [] : [`${map.shards[i]!.index}: ${(history.get(map.shards[i]!.index) ?? []).join('; ')}`]));
      expect(missing, 'shards missing from the cache, with what was accepted and revoked for each').toEqual([]);
      for (const [i, sh] of map.shards.entries()) {
        const k = `${id}/v/${sh.index}`;
        expect(cached[i], `cached ${k}`).toBe(sh.renditions.v!.sha256);
        expect(cached[i], `cached ${k} is the honest encode`).toBe(truth.get(k));
      }
    }
    return { caught, badAccepted: badAccepted.size, badLeft, revoked };
  }

  it('catches an encoder that earns trust first and cheats later, once sampling picks one of its jobs', async () => {
    const tiny = encodeURIComponent(JSON.stringify([{ id: 'v', video: { codec: 'h264', width: 128, height: 72, bitrate: 100_000 } }]));
    const results = [];
    for (let round = 0; round < 3; round++) {
      const s = await start({ cacheEnabled: true });
      const id = (await upload(s.url, fs.readFileSync(await fixture('long-tiny')), `?renditions=${tiny}`)).json.id as string;
      const sleeper = await nativeEncoder(s.url, 'sleeper');
      const honest = [await nativeEncoder(s.url, 'honest'), await nativeEncoder(s.url, 'honest')];
      for (const e of [sleeper, ...honest]) closers.push(e.stop);
      const cheats = new Set<string>();
      s.pool.on('shard-accepted', (a) => {
        const k = `${a.key.contentId}/${a.key.rendition}/${a.key.index}`;
        if (a.peerId === sleeper.peer.peerId && sleeper.jobs >= SLEEPER_HONEST_JOBS) cheats.add(k);
      });
      const map = await waitFor(
        async () => {
          const c = await mapOf(s, id);
          return c.status === 'ready' && s.pool.checks.length === 0 && s.pool.jobs.size === 0 ? c.shardMap : undefined;
        },
        'content encoded and every check settled',
        180_000,
      );
      const truth = new Map([...honest[0]!.made, ...honest[1]!.made]);
      const badLeft = map.shards.filter((sh) => {
        const k = `${id}/v/${sh.index}`;
        return truth.has(k) ? sh.renditions.v!.sha256 !== truth.get(k) : sh.renditions.v!.sha256 === sleeper.made.get(k);
      }).length;
      results.push({
        caught: s.pool.health.isQuarantined(sleeper.peer.peerId),
        passedFirst: s.pool.trust.get(sleeper.peer.peerId).passed,
        badAccepted: cheats.size,
        badLeft,
      });
      for (const c of closers.splice(0)) c();
      for (const sv of servers.splice(0)) await sv.destroy();
    }
    console.log(`sleepers: ${JSON.stringify(results)}`);
    for (const r of results) {
      expect(r.caught).toBe(true);
      expect(r.badLeft).toBe(0);
    }
  }, 600_000);

  it('does not compare hashes of an engine not known to be deterministic: its shards are counted unverifiable', async () => {
    const s = await start({ verifyEngines: 'ffmpeg-wasm', verifyPictureEngines: '' });
    const id = await publish(s);
    for (let i = 0; i < 2; i++) closers.push((await nativeEncoder(s.url, 'honest', 'webcodecs')).stop);
    const map = await waitFor(
      async () => {
        const c = await mapOf(s, id);
        return c.status === 'ready' && s.pool.jobs.size === 0 ? c.shardMap : undefined;
      },
      'content encoded',
      60_000,
    );
    expect(s.pool.trust.counters.checksPlanned).toBe(0);
    expect(s.pool.checks).toHaveLength(0);
    expect(s.pool.trust.counters.unverifiable).toBe(map.shards.length);
  });

  it('catches cheaters that return black or other pictures, quarantines them, and re-encodes their shards', async () => {
    const plan: Honesty[] = ['black', 'other', 'black', 'other'];
    const results = [];
    for (const h of plan) {
      const r = await round(h);
      results.push({ honesty: h, ...r });
      for (const c of closers.splice(0)) c();
      for (const sv of servers.splice(0)) await sv.destroy();
    }
    console.log(`cheaters: ${JSON.stringify(results)}`);
    const caught = results.filter((r) => r.caught).length;
    console.log(
      `detection: ${caught}/${plan.length} caught; bad shards accepted before detection ${results.reduce((n, r) => n + r.badAccepted, 0)}, left after ${results.reduce((n, r) => n + r.badLeft, 0)}`,
    );
    expect(caught).toBe(plan.length);
    for (const r of results) {
      expect(r.badAccepted).toBeGreaterThan(0);
      expect(r.badLeft).toBe(0);
    }
  }, 600_000);
});
