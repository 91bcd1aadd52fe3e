/**
 * The HTTP edge (signaling/edge.ts) on a bare router: coded errors get their
 * status from the one table, Retry-After and Connection: close where due,
 * anything else a 500; unrouted paths fall to the app's files.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ExportError } from '../../src/shared/exportMp4.ts';
import { requestHandler } from '../../signaling/edge.ts';
import { readBody, Router, sendJson } from '../../signaling/http.ts';

let server: http.Server;
let base: string;

beforeAll(async () => {
  const router = new Router()
    .add('GET', '/api/busy', () => {
      throw new ExportError('busy', 'try later', { retryAfterSeconds: 5 });
    })
    .add('GET', '/api/bug', () => {
      throw new Error('a bug');
    })
    .add('PUT', '/api/small', async (req, res) => sendJson(res, 200, { got: (await readBody(req, 10)).byteLength }))
    .add('GET', '/api/ok/:id', (_req, res, p) => sendJson(res, 200, { id: p.id }));
  server = http.createServer(
    requestHandler({ router, corsOrigins: [], distDir: os.tmpdir() + '/no-such-dist', tokens: { adminToken: 't', joinToken: '', viewerToken: '' } }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function call(
  path: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: { error?: { code: string; message: string } } & Record<string, unknown> }> {
  const res = await fetch(base + path, init);
  return { status: res.status, headers: res.headers, body: (await res.json()) as never };
}

describe('edge', () => {
  it('answers a coded error with its status, code, message and Retry-After', async () => {
    const r = await call('/api/busy');
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('5');
    expect(r.body.error).toEqual({ code: 'busy', message: 'try later' });
  });

  it('answers anything else with a logged 500 internal', async () => {
    const log = vi.spyOn(console, 'error').mockImplementation(() => {});
    const r = await call('/api/bug');
    expect(r.status).toBe(500);
    expect(r.body.error?.code).toBe('internal');
    expect(log).toHaveBeenCalled();
    log.mockRestore();
  });

  it('closes the connection when a body was refused unread', async () => {
    const r = await call('/api/small', { method: 'PUT', body: new Uint8Array(100) });
    expect(r.status).toBe(413);
    expect(r.body.error?.code).toBe('too-large');
    expect(r.headers.get('connection')).toBe('close');
  });

  it('routes with parameters; 405 on a known path, 404 on an unknown API path, 503 not-built for a page without a build', async () => {
    expect((await call('/api/ok/a%20b')).body).toEqual({ id: 'a b' });
    expect((await call('/api/ok/x', { method: 'DELETE' })).status).toBe(405);
    const missing = await call('/api/nothing');
    expect([missing.status, missing.body.error?.code]).toEqual([404, 'not-found']);
    const page = await call('/encode');
    expect([page.status, page.body.error?.code]).toEqual([503, 'not-built']);
    const post = await call('/somewhere', { method: 'POST' });
    expect([post.status, post.body.error?.code]).toEqual([405, 'method-not-allowed']);
  });
});
