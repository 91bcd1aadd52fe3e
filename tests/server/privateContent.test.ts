/**
 * Private content (--viewer-token) against a real server: every content read
 * (the list, a map, a source slice, a cached shard, export.mp4, a route added
 * under /api/contents later such as HLS, the pool view) and watching over the
 * pool WebSocket need the viewer token, or the join or admin token; it is
 * taken as ?token= or a bearer token; the CLI's export passes it. Without the
 * option, reads stay public.
 * The option comes from the one config schema (flag and environment) and
 * refuses to start without a join token.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../signaling/config.ts';
import { apiUrl } from '../../src/shared/api.ts';
import { fixture } from '../harness/fixtures.ts';
import { waitFor } from '../harness/poolKit.ts';
import { completeJob, nativeCaps } from '../harness/realShards.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const run = promisify(execFile);
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
      // A route added under /api/contents later (HLS, DASH) is behind the same guard before it exists.
      later: `/api/contents/${id}/hls/master.m3u8`,
    };
    for (const [what, path] of Object.entries(reads)) {
      expect({ what, ...(await read(s.url, path, undefined)) }).toEqual({ what, status: 401, code: 'unauthorized' });
      expect({ what, ...(await read(s.url, path, 'wrong')) }).toEqual({ what, status: 403, code: 'forbidden' });
      const expected = what === 'later' ? 404 : 200;
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
