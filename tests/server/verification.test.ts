/**
 * Picture verification against a real server over real sockets: an honest
 * encoder claiming WebCodecs (native ffmpeg makes its shards), and scripted
 * verifiers that answer `verify` with the figures they choose. A verifier's
 * word alone never convicts: a lone false accuser is overturned by two
 * others and counted against; a silent verifier loses the task to another;
 * results for tasks a peer does not hold, or for other shards, are refused.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { meanLumaPsnr, psnrStatsName, verifyArgs, verifyShardName } from '../../src/encoder/verifyArgs.ts';
import { encodeJob, nativeEncoder } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { LADDER, trustSuite } from '../harness/trustKit.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const { servers, closers, publish } = trustSuite();

/** A server where every job is verified, with the origin's content encoded and its verifications waiting. */
async function encoded(over: Parameters<typeof startTestServer>[0] = {}) {
  const s = await startTestServer({ heartbeatMs: 200, heartbeatTimeoutMs: 2000, verifySampleRate: 1, ...over });
  servers.push(s);
  const id = await publish(s);
  const origin = await nativeEncoder(s.url, 'honest', 'webcodecs@Chromium/1');
  closers.push(origin.stop);
  const map = await waitFor(
    async () => {
      const c = (await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
      return c.status === 'ready' && s.pool.jobs.size === 0 ? c.shardMap : undefined;
    },
    'content encoded by the origin',
    60_000,
  );
  expect(s.pool.verification.queue.length).toBeGreaterThan(0);
  return { s, origin: origin.peer.peerId, map };
}

/** A tab that can verify (it offers ffmpeg.wasm) and answers every `verify` with pictures good or bad, or never. */
async function verifier(s: TestServer, answer: 'pass' | 'fail' | 'silent'): Promise<WsPeer> {
  const p = await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: 'ffmpeg-wasm', codecs: ['h264', 'aac'] }], maxJobs: 1 } });
  closers.push(() => p.close());
  void (async () => {
    for (;;) {
      const m = await p.next('verify', () => true, 600_000).catch(() => undefined);
      if (!m) return;
      if (answer === 'silent') continue;
      const psnr = answer === 'pass' ? 40 : 5;
      p.send({ type: 'verify-result', verifyId: m.verifyId, shards: m.job.shards.map((x) => ({ index: x.index, frames: x.frames, psnr, maxTimeError: 0 })) });
    }
  })();
  return p;
}

describe('picture verification over the protocol', () => {
  it('a lone false accuser convicts nobody: two verifiers overturn it and it is counted against', async () => {
    const { s, origin, map } = await encoded();
    const cleared: string[] = [];
    s.pool.on('verify-cleared', (e) => cleared.push(e.falseAlarm));
    const liar = await verifier(s, 'fail');
    await waitFor(() => s.pool.verification.counters.shardFails > 0 || undefined, 'the liar accuses', 10_000);
    await verifier(s, 'pass');
    await verifier(s, 'pass');
    await waitFor(
      () => (s.pool.verification.queue.length === 0 && s.pool.verification.inProgress.length === 0) || undefined,
      'every verification settled',
      30_000,
    );
    expect(s.pool.verification.counters.convicted).toBe(0);
    expect(s.pool.health.isQuarantined(origin)).toBe(false);
    expect(cleared.length).toBeGreaterThan(0);
    expect(new Set(cleared)).toEqual(new Set([liar.peerId]));
    expect(s.pool.health.get(liar.peerId).invalid).toBeGreaterThan(0);
    const after = (await (await fetch(`${s.url}/api/contents/${map.contentId}`)).json()) as { shardMap: ShardMap };
    expect(after.shardMap.shards.map((x) => x.renditions.v!.sha256)).toEqual(map.shards.map((x) => x.renditions.v!.sha256));
  });

  it('a silent verifier loses its task to another after the timeout; results for tasks not held or other shards are refused', async () => {
    const { s, origin } = await encoded({ verifyTimeoutMs: 600 });
    const silent = await verifier(s, 'silent');
    await waitFor(() => s.pool.verification.busy(silent.peerId) > 0 || undefined, 'a task given to the silent verifier', 10_000);
    const task = s.pool.verification.inProgress.find((t) => t.verifier === silent.peerId)!;
    // Another peer cannot answer it, nor can its verifier answer for other shards.
    const other = await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: 'test', codecs: ['h264'] }], maxJobs: 1 } });
    closers.push(() => other.close());
    other.send({ type: 'verify-result', verifyId: task.id, shards: [{ index: task.indices[0]!, frames: 1, psnr: 0, maxTimeError: 0 }] });
    expect((await other.next('error')).code).toBe('unknown-job');
    silent.send({ type: 'verify-result', verifyId: task.id, shards: [{ index: 99_999, frames: 1, psnr: 0, maxTimeError: 0 }] });
    expect((await silent.next('error')).code).toBe('bad-message');
    const honest = await verifier(s, 'pass');
    await waitFor(() => s.pool.verification.counters.retries > 0 || undefined, 'the silent verifier timed out', 10_000);
    await waitFor(
      () => (s.pool.verification.queue.length === 0 && s.pool.verification.inProgress.length === 0) || undefined,
      'every verification settled by the honest verifier',
      30_000,
    );
    expect(s.pool.verification.counters.convicted).toBe(0);
    expect(s.pool.verification.counters.shardsPassed).toBeGreaterThan(0);
    expect(s.pool.trust.unverifiedCount(origin)).toBe(0);
    expect(s.pool.health.isQuarantined(honest.peerId)).toBe(false);
    expect(s.pool.health.get(silent.peerId).timedOut).toBeGreaterThan(0);
  });

  it("the verifier's command line measures honest shards of the encoders' command line high and wrong pictures low", async () => {
    // Native ffmpeg runs the tab's own verification command here (the referee runs it, the command is the product's).
    const s = await startTestServer({ verifyPictureEngines: '' });
    servers.push(s);
    // 29.97 fps: its shards get a 1/15360 time base, where pairing frames by rounded times went a frame off.
    await upload(s.url, fs.readFileSync(await fixture('av-3s')), `?renditions=${LADDER}`);
    const p = await WsPeer.encoder(s.url);
    closers.push(() => p.close());
    const { job } = await p.next('job');
    const slice = await fetch(new URL(job.sourceUrl, s.url));
    const sliceStart = Number(slice.headers.get('x-slice-start'));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verify-cmd-'));
    try {
      fs.writeFileSync(path.join(dir, 'in.mp4'), new Uint8Array(await slice.arrayBuffer()));
      const measure = async (honesty: 'honest' | 'other') => {
        const shards = await encodeJob(s.url, job, honesty);
        for (const [i, b] of shards.entries()) fs.writeFileSync(path.join(dir, verifyShardName(i)), b);
        await promisify(execFile)('ffmpeg', ['-v', 'error', ...verifyArgs(job, sliceStart, dir)]);
        return job.shards.map((_, i) => meanLumaPsnr(fs.readFileSync(path.join(dir, psnrStatsName(i)), 'utf8')));
      };
      const honest = await measure('honest');
      const wrong = await measure('other');
      console.log(`verify command: honest ${honest.map((x) => x.psnr.toFixed(1)).join(' ')} dB; negated ${wrong.map((x) => x.psnr.toFixed(1)).join(' ')} dB`);
      for (const [i, m] of honest.entries()) expect(m).toMatchObject({ frames: job.shards[i]!.frames });
      expect(Math.min(...honest.map((m) => m.psnr))).toBeGreaterThan(35);
      expect(Math.max(...wrong.map((m) => m.psnr))).toBeLessThan(15);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
