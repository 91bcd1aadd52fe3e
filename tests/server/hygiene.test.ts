/**
 * HTTP hygiene and the bounds that need a pool, against a real server over
 * real HTTP and WebSockets (issue 16 items 6-10, 13-16): malformed escapes,
 * HEAD without building, framing headers, JSON errors everywhere, shard
 * uploads admitted from their head (token, target, size, slots) and read
 * within size and time, source slices bounded in number and size, a deleted
 * content's staged uploads freed, counters that never go negative.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { apiUrl } from '../../src/shared/api.ts';
import type { Job } from '../../src/shared/protocol.ts';
import { encodeJob, NATIVE_ENGINE } from '../harness/nativeEncoder.ts';
import { autoEncode, BYTELESS, waitFor } from '../harness/poolKit.ts';
import { publishFixture, serverPerTest } from '../harness/serverPerTest.ts';
import { adminHeaders, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const kit = serverPerTest();
const track = kit.track;
const publish = async (s: TestServer) => (await publishFixture(s.url, 'av-2997')).id;

type ErrorJson = { error?: { code: string; message: string } };

/**
 * Sends a request head by hand (and `body`, if any, after it) and resolves with the raw answer
 * once the server has answered or closed. `wait`: give up after this many ms (the answer so far).
 */
function rawRequest(base: string, head: string, body?: Buffer, wait = 3000): Promise<string> {
  const { port } = new URL(base);
  return new Promise((resolve) => {
    const sock = net.connect(Number(port), '127.0.0.1');
    let got = '';
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, wait);
    sock.on('data', (d) => {
      got += d.toString('latin1');
      // A whole answer: its head and a body of the declared length.
      const m = /\r\n\r\n/.exec(got);
      const len = Number(/content-length: (\d+)/i.exec(got)?.[1] ?? -1);
      if (m && len >= 0 && got.length >= m.index + 4 + len) done();
    });
    sock.on('error', done);
    sock.on('close', done);
    sock.write(head);
    if (body) sock.write(body);
  });
}

/** An encoder that gets a job with an upload token (shards are checked on upload: the default). */
async function encoderWithJob(s: TestServer): Promise<{ enc: WsPeer; job: Job }> {
  const enc = track(await WsPeer.encoder(s.url));
  const job = (await enc.next('job')).job;
  expect(job.uploadToken).toBeTruthy();
  return { enc, job };
}

const shardPath = (job: Job) => apiUrl.shard({ contentId: job.contentId, rendition: job.rendition, index: job.shards[0]!.index });

describe('HTTP hygiene', () => {
  it('answers a malformed percent-escape with 400 bad-url as JSON', async () => {
    const s = await kit.start();
    for (const p of ['/api/contents/%E0%A4%A', '/api/contents/%ZZ/export.mp4']) {
      const res = await fetch(s.url + p);
      expect(res.status, p).toBe(400);
      expect(((await res.json()) as ErrorJson).error?.code).toBe('bad-url');
    }
  });

  it('answers OPTIONS from an origin without CORS, and without one, with a JSON error', async () => {
    const s = await kit.start();
    for (const headers of [{ Origin: 'https://evil.example' }, {}] as Record<string, string>[]) {
      const res = await fetch(`${s.url}/api/contents`, { method: 'OPTIONS', headers });
      expect(res.status).toBe(403);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      expect(((await res.json()) as ErrorJson).error?.code).toBe('bad-origin');
    }
  });

  it('forbids framing of pages and answers', async () => {
    const s = await kit.start();
    for (const p of ['/publish', '/', '/api/health', '/api/nothing']) {
      const res = await fetch(s.url + p);
      await res.arrayBuffer();
      expect(res.headers.get('x-frame-options'), p).toBe('DENY');
      expect(res.headers.get('content-security-policy'), p).toContain("frame-ancestors 'none'");
    }
  });

  it('answers HEAD on a source slice and an export without building them', async () => {
    // A slice limit that any real slice passes, and no export build slot: a GET is refused, a HEAD needs neither.
    const s = await kit.start({ ...BYTELESS, maxSliceBytes: 1000, exportMaxConcurrent: 0 });
    const id = await publish(s);
    const slice = `${s.url}${apiUrl.source(id, { start: 0, end: 2, tracks: 'both' })}`;
    expect((await fetch(slice)).status).toBe(422);
    const head = await fetch(slice, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('video/mp4');
    expect((await fetch(`${s.url}${apiUrl.source(id, { start: 5, end: 2, tracks: 'both' })}`, { method: 'HEAD' })).status).toBe(400);

    // Every variant accepted on a fake encoder's word, each hash that of known bytes; one shard's copy is put in the
    // cache, where the restart's check against the registry finds it intact and indexes it.
    const bytesOf = (job: Job, index: number) => Buffer.from(`not built ${job.contentId}/${job.rendition}/${index}`);
    const autoEncoder = track(await WsPeer.encoder(s.url));
    let cachedCopy: { job: Job; index: number } | undefined;
    void (async () => {
      for (;;) {
        const job = await autoEncoder
          .next('job', () => true, 60_000)
          .then(
            (m) => m.job,
            () => undefined,
          );
        if (!job) return;
        for (const sh of job.shards) {
          const b = bytesOf(job, sh.index);
          const sha256 = crypto.createHash('sha256').update(b).digest('hex');
          autoEncoder.send({
            type: 'shard-ready',
            jobId: job.id,
            key: { contentId: job.contentId, rendition: job.rendition, index: sh.index },
            sha256,
            size: b.byteLength,
          });
          if ('video' in (s.store.get(id)!.map.renditions.find((r) => r.id === job.rendition) ?? {})) cachedCopy ??= { job, index: sh.index };
        }
        autoEncoder.send({ type: 'job-done', jobId: job.id });
      }
    })();
    await waitFor(
      async () => ((await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string }).status === 'ready' || undefined,
      'all encoded',
    );
    autoEncoder.kill();
    const copy = cachedCopy!;
    fs.mkdirSync(path.join(s.dataDir, 'cache', id, copy.job.rendition), { recursive: true });
    fs.writeFileSync(path.join(s.dataDir, 'cache', id, copy.job.rendition, `${copy.index}.mp4`), bytesOf(copy.job, copy.index));
    await s.close();
    const s2 = await kit.start({ ...BYTELESS, maxSliceBytes: 1000, exportMaxConcurrent: 0 }, s.dataDir);
    const exp = `${s2.url}${apiUrl.export(id)}`;
    expect((await fetch(exp)).status).toBe(503);
    const h = await fetch(exp, { method: 'HEAD' });
    expect(h.status).toBe(200);
    expect(h.headers.get('content-disposition')).toContain('.mp4');
  });
});

describe('shard uploads are admitted from their head', () => {
  it('refuses an upload without a token, or with a wrong one, before its body is sent', async () => {
    const s = await kit.start();
    const id = await publish(s);
    const put = apiUrl.shard({ contentId: id, rendition: s.store.get(id)!.map.renditions[0]!.id, index: 0 });
    const big = 15 * 2 ** 20;
    // No body at all follows these heads: an answer proves the server did not wait for one.
    const none = await rawRequest(s.url, `PUT ${put} HTTP/1.1\r\nHost: x\r\nContent-Length: ${big}\r\n\r\n`);
    expect(none).toMatch(/^HTTP\/1\.1 401/);
    expect(none).toContain('"upload-token-required"');
    const wrong = await rawRequest(s.url, `PUT ${put} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: ${big}\r\n\r\n`);
    expect(wrong).toMatch(/^HTTP\/1\.1 403/);
    expect(wrong).toMatch(/connection: close/i);
    // With Expect: 100-continue the refusal comes instead of the 100.
    const expect100 = await rawRequest(
      s.url,
      `PUT ${put} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nExpect: 100-continue\r\nContent-Length: ${big}\r\n\r\n`,
    );
    expect(expect100).toMatch(/^HTTP\/1\.1 403/);
    // Over the size cap, even with a good token.
    const { job } = await encoderWithJob(s);
    const over = await rawRequest(
      s.url,
      `PUT ${shardPath(job)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${job.uploadToken}\r\nContent-Length: ${s.config.maxShardBytes + 1}\r\n\r\n`,
    );
    expect(over).toMatch(/^HTTP\/1\.1 413/);
  });

  it('admits a copy for the cache (no token) only for an accepted variant, and no larger than it', async () => {
    const s = await kit.start(BYTELESS);
    const id = await publish(s);
    const rendition = s.store.get(id)!.map.renditions[0]!.id;
    const head = (index: number, length: number) =>
      `PUT ${apiUrl.shard({ contentId: id, rendition, index })} HTTP/1.1\r\nHost: x\r\nContent-Length: ${length}\r\n\r\n`;
    expect(await rawRequest(s.url, head(0, 500))).toMatch(/^HTTP\/1\.1 409[\s\S]*"not-accepted"/);
    void autoEncode(track(await WsPeer.encoder(s.url)), []);
    await waitFor(() => s.store.get(id)!.map.shards[0]!.renditions[rendition]!.status === 'ready' || undefined, 'shard 0 accepted');
    // The fake encoder reports shard 0 at 1000 bytes: a copy declaring more is refused before it is read.
    expect(await rawRequest(s.url, head(0, 1001))).toMatch(/^HTTP\/1\.1 413/);
    expect(await rawRequest(s.url, head(99_999, 10))).toMatch(/^HTTP\/1\.1 404[\s\S]*"unknown-shard"/);
  });

  it('bounds bodies per client, in size while streaming, and in time', async () => {
    const s = await kit.start({ maxShardUploadsPerIp: 1, shardUploadTimeoutMs: 1500, maxShardBytes: 64 * 1024, jobDeadlineMinMs: 600_000 });
    await publish(s);
    const { job } = await encoderWithJob(s);
    const head = (extra: string) => `PUT ${shardPath(job)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${job.uploadToken}\r\n${extra}\r\n`;
    // A slow body holds the client's one slot: a second upload is refused at once, then the slow one times out.
    const slow = rawRequest(s.url, head('Content-Length: 1000\r\n'), Buffer.alloc(10), 5000);
    await waitFor(() => s.refusals.tooManyUploads === 0 || undefined, 'start');
    await new Promise((r) => setTimeout(r, 200));
    const second = await rawRequest(s.url, head('Content-Length: 1000\r\n'));
    expect(second).toMatch(/^HTTP\/1\.1 429/);
    expect(second).toContain('"too-many-uploads"');
    expect(second).toMatch(/retry-after: 1/i);
    const timedOut = await slow;
    expect(timedOut).toMatch(/^HTTP\/1\.1 408/);
    // The slot came back; a chunked body is cut off once it passes the cap.
    const chunk = Buffer.alloc(32 * 1024, 1);
    const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
    const chunked = await rawRequest(s.url, head('Transfer-Encoding: chunked\r\n'), Buffer.concat([frame, frame, frame]));
    expect(chunked).toMatch(/^HTTP\/1\.1 413/);
  });

  it('frees the staged bytes of running jobs when their content is deleted', async () => {
    const s = await kit.start({ jobDeadlineMinMs: 600_000, verifySampleRate: 0, verifyNewEncoderJobs: 0 });
    const id = await publish(s);
    const enc = track(await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: NATIVE_ENGINE, codecs: ['h264'] }], maxJobs: 1 } }));
    const job = (await enc.next('job')).job;
    const [bytes] = await encodeJob(s.url, job, 'honest');
    const index = job.shards[0]!.index;
    const put = await fetch(s.url + shardPath(job), { method: 'PUT', body: bytes as BodyInit, headers: { Authorization: `Bearer ${job.uploadToken}` } });
    expect(put.status, await put.text()).toBe(200);
    expect(s.pool.ledger.staging(job.id, index)?.bytes?.byteLength).toBe(bytes!.byteLength);
    const del = await fetch(`${s.url}/api/contents/${id}`, { method: 'DELETE', headers: adminHeaders() });
    expect(del.status).toBe(200);
    expect(s.pool.ledger.staging(job.id, index)).toBeUndefined();
    expect(s.pool.ledger.jobs.size).toBe(0);
    // The job's token died with it: an upload for it is refused from its head.
    const after = await rawRequest(
      s.url,
      `PUT ${shardPath(job)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${job.uploadToken}\r\nContent-Length: 100\r\n\r\n`,
    );
    expect(after).toMatch(/^HTTP\/1\.1 403/);
  });
});

describe('source slices', () => {
  it('bounds concurrent builds and the bytes of one slice', async () => {
    const s = await kit.start({ maxConcurrentSlices: 1 });
    const id = await publish(s);
    const url = `${s.url}${apiUrl.source(id, { start: 0, end: 8, tracks: 'both' })}`;
    const statuses = await Promise.all(Array.from({ length: 6 }, () => fetch(url).then(async (r) => (await r.arrayBuffer(), r.status))));
    expect(statuses).toContain(200);
    expect(statuses).toContain(503);
    expect(s.refusals.busySlices).toBeGreaterThan(0);
    await s.close();
    const small = await kit.start({ maxSliceBytes: 50_000 }, s.dataDir);
    const r = await fetch(`${small.url}${apiUrl.source(id, { start: 0, end: 8, tracks: 'both' })}`);
    expect(r.status).toBe(422);
    expect(((await r.json()) as ErrorJson).error?.code).toBe('slice-too-large');
  });

  it('needs the join token when one is set', async () => {
    const s = await kit.start({ joinToken: 'join-secret' });
    const id = await publish(s);
    const path = apiUrl.source(id, { start: 0, end: 2, tracks: 'video' });
    expect((await fetch(s.url + path)).status).toBe(401);
    expect((await fetch(`${s.url}${path}&token=join-secret`)).status).toBe(200);
  });
});

describe('WebSocket answers', () => {
  it('names each rendition once however often a locate repeats it, and counts no negative requests', async () => {
    const s = await kit.start();
    const id = await publish(s);
    const v = track(await WsPeer.viewer(s.url));
    const renditions = s.store.get(id)!.map.renditions.map((r) => r.id);
    v.send({ type: 'locate', requestId: 1, contentId: id, from: 0, count: 2, renditions: Array(16).fill(renditions[0]) });
    const h = await v.next('holders', (m) => m.requestId === 1);
    expect(h.shards.length).toBe(2);
    v.send({ type: 'locate', requestId: 2, contentId: id, from: 1_000_000, count: 100 });
    expect((await v.next('holders', (m) => m.requestId === 2)).shards).toEqual([]);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const requests = Number(/^shardcast_shard_requests_total (\S+)/m.exec(metrics)?.[1]);
    expect(requests).toBe(2);
  });
});
