/**
 * Access control against a real server: the admin token on publish and
 * delete (generated on first start, or configured), the CLI's --token, the
 * optional join token for tabs and source slices, the WebSocket Origin check,
 * and CORS closed by default.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../signaling/config.ts';
import { fixture } from '../harness/fixtures.ts';
import { adminHeaders, startTestServer, TEST_ADMIN_TOKEN, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';
import type { Job } from '../../src/shared/protocol.ts';

const run = promisify(execFile);
let clip: Uint8Array;
let clipFile: string;
let server: TestServer | undefined;
const peers: WsPeer[] = [];

beforeAll(async () => {
  clipFile = await fixture('av-2997');
  clip = fs.readFileSync(clipFile);
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

const post = (s: TestServer, headers: Record<string, string> = {}) =>
  fetch(`${s.url}/api/contents`, { method: 'POST', body: clip as unknown as BodyInit, headers: { 'Content-Type': 'application/octet-stream', ...headers } });

/** Opens /ws with the given headers; resolves with the HTTP status of a refused upgrade, or 101. */
function upgradeStatus(s: TestServer, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${s.url.replace(/^http/, 'ws')}/ws`, { headers });
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.once('error', (e) => {
      if (!/Unexpected server response/.test(e.message)) reject(e);
    });
  });
}

describe('admin token', () => {
  it('publishing and deleting need the admin token: 401 without, 403 when wrong, reads stay public', async () => {
    const s = (server = await startTestServer());
    const none = await post(s);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    const wrong = await post(s, adminHeaders('not-the-token'));
    expect(wrong.status).toBe(403);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('forbidden');
    expect(fs.readdirSync(path.join(s.dataDir, 'contents')).filter((n) => !n.startsWith('.'))).toEqual([]);

    const ok = await post(s, adminHeaders());
    expect(ok.status).toBe(201);
    const { id } = (await ok.json()) as { id: string };
    expect((await fetch(`${s.url}/api/contents/${id}`)).status).toBe(200);
    expect((await fetch(`${s.url}/api/contents`)).status).toBe(200);

    expect((await fetch(`${s.url}/api/contents/${id}`, { method: 'DELETE' })).status).toBe(401);
    expect((await fetch(`${s.url}/api/contents/${id}`, { method: 'DELETE', headers: adminHeaders('nope') })).status).toBe(403);
    expect((await fetch(`${s.url}/api/contents/${id}`)).status).toBe(200);
    expect((await fetch(`${s.url}/api/contents/${id}`, { method: 'DELETE', headers: adminHeaders() })).status).toBe(200);
    expect((await fetch(`${s.url}/api/contents/${id}`)).status).toBe(404);
  });

  it('a new install generates its token into DATA_DIR (mode 0600) and keeps it across restarts', async () => {
    let s = (server = await startTestServer({ adminToken: '' }));
    const file = path.join(s.dataDir, 'admin-token');
    expect(s.admin.source).toBe('generated');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const token = fs.readFileSync(file, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect(token).not.toBe(TEST_ADMIN_TOKEN);
    expect((await post(s, adminHeaders())).status).toBe(403);
    expect((await post(s, adminHeaders(token))).status).toBe(201);

    s = server = await s.restart({ adminToken: '' });
    expect(s.admin.source).toBe('file');
    expect(s.admin.token).toBe(token);
    expect(fs.readdirSync(s.dataDir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('SHARDCAST_ADMIN_TOKEN and --admin-token override the file', () => {
    expect(loadConfig([], { SHARDCAST_ADMIN_TOKEN: 'from-env' }).adminToken).toBe('from-env');
    expect(loadConfig(['--admin-token', 'from-flag'], { SHARDCAST_ADMIN_TOKEN: 'from-env' }).adminToken).toBe('from-flag');
  });

  it('the CLI sends --token (or SHARDCAST_TOKEN) and explains a refusal', async () => {
    const s = (server = await startTestServer({ adminToken: 'cli-secret' }));
    const cli = path.resolve('signaling/bin/shardcast.js');
    const env = { ...process.env, SHARDCAST_TOKEN: '' };
    const refused = await run(process.execPath, [cli, 'publish', clipFile, '--server', s.url], { env }).catch((e: { code: number; stderr: string }) => e);
    expect((refused as { code: number }).code).toBe(1);
    expect((refused as { stderr: string }).stderr).toMatch(/401 unauthorized.*--token/s);
    // Refused on "Expect: 100-continue", before the file was sent.
    expect((refused as { stderr: string }).stderr).not.toMatch(/uploading: 100%/);
    const byFlag = await run(process.execPath, [cli, 'publish', clipFile, '--server', s.url, '--token', 'cli-secret'], { env });
    expect(byFlag.stdout.trim()).toMatch(/^[A-Za-z0-9]+$/);
    const byEnv = await run(process.execPath, [cli, 'publish', clipFile, '--server', s.url], { env: { ...env, SHARDCAST_TOKEN: 'cli-secret' } });
    expect(byEnv.stdout.trim()).toMatch(/^[A-Za-z0-9]+$/);
  });
});

describe('join token', () => {
  it('tabs join anonymously by default', async () => {
    const s = (server = await startTestServer());
    peers.push(await WsPeer.viewer(s.url));
    expect(s.pool.peers.size).toBe(1);
  });

  it('with a join token, a hello without it or with a wrong one is refused and closed; the right one joins', async () => {
    const s = (server = await startTestServer({ joinToken: 'join-secret' }));
    for (const token of [undefined, 'wrong']) {
      const p = await WsPeer.connect(s.url);
      peers.push(p);
      p.send({ type: 'hello', protocol: 1, role: 'viewer', ...(token && { token }) });
      const err = await p.next('error');
      expect(err.code).toBe(token ? 'forbidden' : 'unauthorized');
      expect((await p.closed).code).toBe(1008);
    }
    expect(s.pool.peers.size).toBe(0);
    const ok = await WsPeer.connect(s.url);
    peers.push(ok);
    await ok.hello({ role: 'viewer', token: 'join-secret' });
    expect(s.pool.peers.size).toBe(1);
    expect(s.refusals.badJoinToken).toBe(2);
  });

  it('source slices need the join token, and the jobs given to encoders carry it', async () => {
    const s = (server = await startTestServer({ joinToken: 'join-secret' }));
    const up = await post(s, adminHeaders());
    const { id } = (await up.json()) as { id: string };
    expect((await fetch(`${s.url}/api/contents/${id}/source?start=0&end=1&tracks=video`)).status).toBe(401);
    expect((await fetch(`${s.url}/api/contents/${id}/source?start=0&end=1&tracks=video&token=bad`)).status).toBe(403);
    const enc = await WsPeer.encoder(s.url, { token: 'join-secret' });
    peers.push(enc);
    const job = (await enc.next('job')).job as Job;
    expect(new URL(job.sourceUrl, s.url).searchParams.get('token')).toBe('join-secret');
    const slice = await fetch(new URL(job.sourceUrl, s.url));
    expect(slice.status).toBe(200);
    expect(slice.headers.get('content-type')).toBe('video/mp4');
  });
});

describe('origin and CORS', () => {
  it('the WebSocket takes same-host origins and clients without Origin; other sites are refused', async () => {
    const s = (server = await startTestServer());
    const host = new URL(s.url).host;
    expect(await upgradeStatus(s, {})).toBe(101);
    expect(await upgradeStatus(s, { Origin: `http://${host}` })).toBe(101);
    expect(await upgradeStatus(s, { Origin: 'https://evil.example' })).toBe(403);
    expect(await upgradeStatus(s, { Origin: 'null' })).toBe(403);
    expect(s.refusals.badOrigin).toBe(2);
  });

  it('configured origins replace the same-host rule', async () => {
    const s = (server = await startTestServer({ allowedOrigins: 'https://app.example, https://other.example/' }));
    expect(await upgradeStatus(s, { Origin: 'https://other.example' })).toBe(101);
    expect(await upgradeStatus(s, { Origin: `http://${new URL(s.url).host}` })).toBe(403);
  });

  it('CORS is closed by default and opens only for configured origins', async () => {
    let s = (server = await startTestServer());
    const closed = await fetch(`${s.url}/api/contents`, { headers: { Origin: 'https://app.example' } });
    expect(closed.headers.get('access-control-allow-origin')).toBeNull();
    // Join tokens ride in page URLs: no page may leak its URL to another site.
    expect(closed.headers.get('referrer-policy')).toBe('no-referrer');
    const preflight = await fetch(`${s.url}/api/contents`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();

    s = server = await s.restart({ corsOrigins: 'https://app.example' });
    const open = await fetch(`${s.url}/api/contents`, { headers: { Origin: 'https://app.example' } });
    expect(open.headers.get('access-control-allow-origin')).toBe('https://app.example');
    const other = await fetch(`${s.url}/api/contents`, { headers: { Origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(`${s.url}/api/contents`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
  });
});
