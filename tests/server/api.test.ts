/**
 * The HTTP API contract (src/shared/api.ts) against a real server: every JSON
 * answer parses with its schema, the URL builders reach the routes, and large
 * JSON (the shard map) comes compressed when asked and identical once
 * decompressed.
 */
import http from 'node:http';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apiUrl,
  contentResponseSchema,
  contentsResponseSchema,
  deleteResponseSchema,
  errorResponseSchema,
  healthResponseSchema,
  poolSnapshotSchema,
  publishResponseSchema,
} from '../../src/shared/api.ts';
import { fixture } from '../harness/fixtures.ts';
import { adminHeaders, startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let s: TestServer;
let id: string;

beforeAll(async () => {
  s = await startTestServer();
  const r = await upload(s.url, new Uint8Array(fs.readFileSync(await fixture('av-2997'))));
  expect(r.status).toBe(201);
  id = publishResponseSchema.parse(r.json).id;
});
afterAll(async () => {
  await s?.destroy();
});

/** A GET with exactly these headers (fetch would decompress behind our back). */
function rawGet(path: string, headers: Record<string, string>, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, s.url), { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('API contract', () => {
  it('every JSON answer parses with its schema in src/shared/api.ts', async () => {
    const get = async (path: string) => (await fetch(new URL(path, s.url))).json();
    healthResponseSchema.parse(await get(apiUrl.health()));
    const list = contentsResponseSchema.parse(await get(apiUrl.contents()));
    expect(list.contents.map((c) => c.id)).toContain(id);
    const one = contentResponseSchema.parse(await get(apiUrl.content(id)));
    expect(one.shardMap.contentId).toBe(id);
    poolSnapshotSchema.parse(await get(apiUrl.pool()));

    const unknown = await fetch(new URL(apiUrl.content('nope'), s.url));
    expect(unknown.status).toBe(404);
    expect(errorResponseSchema.parse(await unknown.json()).error.code).toBe('unknown-content');
    const notCached = await fetch(new URL(apiUrl.shard({ contentId: id, rendition: one.shardMap.renditions[0]!.id, index: 0 }), s.url));
    expect(notCached.status).toBe(404);
    expect(errorResponseSchema.parse(await notCached.json()).error.code).toBe('not-cached');
    const exportEarly = await fetch(new URL(apiUrl.export(id), s.url));
    expect(exportEarly.status).toBe(409);
    expect(errorResponseSchema.parse(await exportEarly.json()).error.code).toBe('not-cached');
  });

  it('the URL builders reach the routes: source slice, metrics', async () => {
    const slice = await fetch(new URL(apiUrl.source(id, { start: 0, end: 1, tracks: 'video' }), s.url));
    expect(slice.status).toBe(200);
    expect(slice.headers.get('x-slice-start')).toBe('0');
    expect((await fetch(new URL(apiUrl.metrics(), s.url))).status).toBe(200);
  });

  it('sends the shard map brotli- or gzip-compressed when asked, identical once decompressed; small answers and identity stay plain', async () => {
    const plain = await rawGet(apiUrl.content(id), {});
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(Number(plain.headers['content-length'])).toBe(plain.body.byteLength);
    expect(plain.body.byteLength).toBeGreaterThan(4_000);

    const br = await rawGet(apiUrl.content(id), { 'Accept-Encoding': 'gzip, deflate, br' });
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers.vary).toMatch(/Accept-Encoding/);
    expect(br.body.byteLength).toBeLessThan(plain.body.byteLength / 3);
    expect(zlib.brotliDecompressSync(br.body).equals(plain.body)).toBe(true);

    const gz = await rawGet(apiUrl.content(id), { 'Accept-Encoding': 'gzip' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(zlib.gunzipSync(gz.body).equals(plain.body)).toBe(true);

    // q=0 refuses a coding; a preference by q-value is honoured.
    expect((await rawGet(apiUrl.content(id), { 'Accept-Encoding': 'br;q=0, gzip;q=0' })).headers['content-encoding']).toBeUndefined();
    expect((await rawGet(apiUrl.content(id), { 'Accept-Encoding': 'br;q=0.5, gzip' })).headers['content-encoding']).toBe('gzip');

    const health = await rawGet(apiUrl.health(), { 'Accept-Encoding': 'br' });
    expect(health.headers['content-encoding']).toBeUndefined();
    healthResponseSchema.parse(JSON.parse(health.body.toString('utf8')));

    const head = await rawGet(apiUrl.content(id), { 'Accept-Encoding': 'br' }, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-encoding']).toBe('br');
    expect(head.body.byteLength).toBe(0);
  });

  it('compressed error answers keep their status and code; DELETE answers its schema', async () => {
    const del = await fetch(new URL(apiUrl.content(id), s.url), { method: 'DELETE', headers: adminHeaders() });
    expect(del.status).toBe(200);
    expect(deleteResponseSchema.parse(await del.json()).deleted).toBe(id);
    const gone = await rawGet(apiUrl.content(id), { 'Accept-Encoding': 'br' });
    expect(gone.status).toBe(404);
    expect(errorResponseSchema.parse(JSON.parse(gone.body.toString('utf8'))).error.code).toBe('unknown-content');
  });
});
