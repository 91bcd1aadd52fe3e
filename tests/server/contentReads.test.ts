/**
 * Content reads over real HTTP, against a real server: who may read them, and
 * what a client may keep.
 *
 * Private content (--viewer-token): every content read
 * (the list, a map, a source slice, a cached shard, export.mp4, a route added
 * under /api/contents later such as HLS, the pool view) and watching over the
 * pool WebSocket need the viewer token, or the join or admin token; it is
 * taken as ?token= or a bearer token; the CLI's export passes it. Without the
 * option, reads stay public.
 * The option comes from the one config schema (flag and environment) and
 * refuses to start without a join token.
 *
 * Cached shard URLs when a variant is replaced (a cross-check found the
 * accepted bytes wrong and two encoders agree on others): a client holding
 * the old copy must never keep using it. The content-addressed URL
 * (`?sha256=`) is immutable and stops answering once its variant is gone; the
 * plain URL is revalidated by ETag, and a revalidation with the old ETag gets
 * the new bytes. Real shards made by native ffmpeg.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../signaling/config.ts';
import { apiUrl } from '../../src/shared/api.ts';
import { fixture } from '../harness/fixtures.ts';
import { waitFor } from '../harness/poolKit.ts';
import { encodeJob } from '../harness/nativeEncoder.ts';
import { completeJob, joinEncoder, nativeCaps, replaceVariant } from '../harness/realShards.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const run = promisify(execFile);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const VIEWER = 'viewer-secret';
const JOIN = 'join-secret';
let clip: Uint8Array;
let server: TestServer | undefined;
const peers: WsPeer[] = [];

beforeAll(async () => {
  clip = new Uint8Array(fs.readFileSync(await fixture('av-3s')));
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

/** Status and error code of a GET with the token given `how`. */
async function read(base: string, path: string, token: string | undefined, how: 'query' | 'bearer' = 'query'): Promise<{ status: number; code?: string }> {
  const url = new URL(path, base);
  if (token && how === 'query') url.searchParams.set('token', token);
  const res = await fetch(url, { headers: token && how === 'bearer' ? { Authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code: string } }).error?.code;
  } catch {
    /* a binary answer */
  }
  return { status: res.status, ...(code !== undefined && { code }) };
}

/** Sends hello and returns the refusal's code, or 'welcome'. */
async function hello(base: string, role: 'viewer' | 'encoder', token?: string): Promise<string> {
  const p = await WsPeer.connect(base);
  peers.push(p);
  const answer = Promise.race([p.next('welcome').then(() => 'welcome'), p.next('error').then((e) => e.code)]);
  p.send({ type: 'hello', protocol: 1, role, ...(token && { token }), ...(role === 'encoder' && { capabilities: nativeCaps(1) }) });
  return answer;
}

describe('private content (viewer token)', () => {
  it('every content read and watching need the viewer (or join, or admin) token; encoders still work with the join token', async () => {
    const s = (server = await startTestServer({ joinToken: JOIN, viewerToken: VIEWER, verifyNewEncoderJobs: 0, verifySampleRate: 0 }));
    const id = (await upload(s.url, clip)).json.id as string;
    // An encoder with the join token encodes one job (its source slice URL carries the join token) and its shards are cached.
    const enc = await WsPeer.encoder(s.url, { capabilities: nativeCaps(1), token: JOIN });
    peers.push(enc);
    const { job } = await enc.next('job', () => true, 30_000);
    await completeJob(s.url, enc, job);
    const key = { contentId: id, rendition: job.rendition, index: job.shards[0]!.index };
    await waitFor(async () => (await read(s.url, apiUrl.shard(key), VIEWER)).status === 200 || undefined, 'a cached shard');

    const reads = {
      list: apiUrl.contents(),
      map: apiUrl.content(id),
      shard: apiUrl.shard(key),
      export: apiUrl.export(id),
      pool: apiUrl.pool(),
      // Routes added under /api/contents later (HLS, DASH) are behind the same guard.
      hls: apiUrl.hlsMaster(id),
      dash: apiUrl.dash(id),
    };
    for (const [what, path] of Object.entries(reads)) {
      expect({ what, ...(await read(s.url, path, undefined)) }).toEqual({ what, status: 401, code: 'unauthorized' });
      expect({ what, ...(await read(s.url, path, 'wrong')) }).toEqual({ what, status: 403, code: 'forbidden' });
      const expected = 200;
      for (const [token, how] of [
        [VIEWER, 'query'],
        [VIEWER, 'bearer'],
        [JOIN, 'bearer'],
        [s.admin.token, 'bearer'],
      ] as const) {
        expect({ what, token, how, status: (await read(s.url, path, token, how)).status }).toEqual({ what, token, how, status: expected });
      }
    }
    // Source slices: encoders' work, so the join token; the viewer token alone does not open them.
    const source = apiUrl.source(id, { start: 0, end: 1, tracks: 'video' });
    expect(await read(s.url, source, undefined)).toEqual({ status: 401, code: 'unauthorized' });
    expect((await read(s.url, source, VIEWER)).status).toBe(403);
    expect((await read(s.url, source, JOIN)).status).toBe(200);
    // Uploads are not reads: a shard PUT without the job's upload token is refused for that reason, not for the viewer token.
    expect((await fetch(new URL(apiUrl.shard(key), s.url), { method: 'PUT', body: new Uint8Array(8) })).status).toBe(401);

    // The CLI passes the viewer token (flag or environment) for an export; without one it says what is missing.
    const cli = path.resolve('signaling/bin/shardcast.js');
    const out = path.join(s.dataDir, 'cli-export.mp4');
    const env = { ...process.env, SHARDCAST_VIEWER_TOKEN: '' };
    const refused = await run(process.execPath, [cli, 'export', id, '--out', out, '--server', s.url], { env }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((refused as { code: number }).code).toBe(1);
    expect((refused as { stderr: string }).stderr).toMatch(/401 unauthorized.*viewer token/);
    expect(fs.existsSync(out)).toBe(false);
    await run(process.execPath, [cli, 'export', id, '--out', out, '--server', s.url, '--token', VIEWER], { env });
    expect(fs.readFileSync(out).subarray(4, 8).toString('latin1')).toBe('ftyp');
    fs.rmSync(out);
    await run(process.execPath, [cli, 'export', id, '--out', out, '--server', s.url], { env: { ...env, SHARDCAST_VIEWER_TOKEN: VIEWER } });
    expect(fs.statSync(out).size).toBeGreaterThan(1000);

    // Watching over the pool: a viewer needs the viewer, join or admin token; an encoder needs the join token.
    expect(await hello(s.url, 'viewer')).toBe('unauthorized');
    expect(await hello(s.url, 'viewer', 'wrong')).toBe('forbidden');
    expect(await hello(s.url, 'viewer', VIEWER)).toBe('welcome');
    expect(await hello(s.url, 'viewer', JOIN)).toBe('welcome');
    expect(await hello(s.url, 'encoder', VIEWER)).toBe('forbidden');
    expect(await hello(s.url, 'encoder', JOIN)).toBe('welcome');
  }, 60_000);

  it('without a viewer token content reads stay public, even with a join token', async () => {
    const s = (server = await startTestServer({ joinToken: JOIN }));
    const id = (await upload(s.url, clip)).json.id as string;
    expect((await read(s.url, apiUrl.contents(), undefined)).status).toBe(200);
    expect((await read(s.url, apiUrl.content(id), undefined)).status).toBe(200);
    expect((await read(s.url, apiUrl.pool(), undefined)).status).toBe(200);
  });

  it('is one documented option (flag and environment) and needs a join token', () => {
    expect(loadConfig(['--viewer-token', 'v', '--join-token', 'j'], {}).viewerToken).toBe('v');
    expect(loadConfig([], { SHARDCAST_VIEWER_TOKEN: 'v', SHARDCAST_JOIN_TOKEN: 'j' }).viewerToken).toBe('v');
    expect(loadConfig([], {}).viewerToken).toBe('');
    expect(() => loadConfig(['--viewer-token', 'v'], {})).toThrow(/--viewer-token needs --join-token/);
  });
});

describe('cached shard URLs', () => {
  it('a replaced variant is never served under its old address, and revalidating the plain URL gets the new bytes', async () => {
    const s = (server = await startTestServer({ verifyNewEncoderJobs: 0, verifySampleRate: 0 }));
    const id = (await upload(s.url, clip)).json.id as string;
    const { peer } = await joinEncoder(s.url, nativeCaps(1));
    peers.push(peer);
    const { job } = await peer.next('job', () => true, 30_000);
    const hashes = await completeJob(s.url, peer, job);
    const key = { contentId: id, rendition: job.rendition, index: job.shards[0]!.index };
    const oldSha = hashes.get(key.index)!;
    const plain = new URL(apiUrl.shard(key), s.url);
    const byHash = (h: string) => new URL(apiUrl.cachedShard(key, h), s.url);
    await waitFor(async () => (await fetch(plain)).status === 200 || undefined, 'the shard in the cache');

    // Before: the hash-addressed URL may be kept for good; the plain one only with revalidation.
    const first = await fetch(byHash(oldSha));
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toContain('immutable');
    const plainRes = await fetch(plain);
    expect(plainRes.headers.get('etag')).toBe(`"${oldSha}"`);
    expect(plainRes.headers.get('cache-control')).toContain('no-cache');
    expect(plainRes.headers.get('cache-control')).not.toContain('immutable');
    expect((await fetch(plain, { headers: { 'If-None-Match': `"${oldSha}"` } })).status).toBe(304);

    // The replacement, as CrossChecks.replaceVariant does it: the old variant revoked, the agreeing one accepted with its bytes.
    const [newBytes] = await encodeJob(s.url, { ...job, shards: job.shards.slice(0, 1) }, 'other');
    const newSha = replaceVariant(s, key, newBytes!, peer.peerId);
    expect(newSha).not.toBe(oldSha);
    await waitFor(async () => (await fetch(byHash(newSha))).status === 200 || undefined, 'the new variant in the cache');

    // After: the old address answers a clear error, never the old bytes.
    const gone = await fetch(byHash(oldSha));
    expect(gone.status).toBe(404);
    const err = (await gone.json()) as { error: { code: string; message: string } };
    expect(err.error.code).toBe('variant-replaced');
    expect(err.error.message).toContain(newSha);
    // A client revalidating its old copy of the plain URL gets the new bytes.
    const revalidated = await fetch(plain, { headers: { 'If-None-Match': `"${oldSha}"` } });
    expect(revalidated.status).toBe(200);
    expect(revalidated.headers.get('etag')).toBe(`"${newSha}"`);
    expect(sha(new Uint8Array(await revalidated.arrayBuffer()))).toBe(newSha);
    const current = await fetch(byHash(newSha));
    expect(current.headers.get('cache-control')).toContain('immutable');
    expect(sha(new Uint8Array(await current.arrayBuffer()))).toBe(newSha);
  }, 60_000);
});
