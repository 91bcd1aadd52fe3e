/**
 * The encoder's retry of requests refused for load (src/encoder/busyRetry.ts)
 * against a real local HTTP server: it waits Retry-After and tries again,
 * gives up after BUSY_TRIES, and passes any other answer straight through.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSY_TRIES, fetchUnlessBusy, retryAfterSeconds } from '../../src/encoder/busyRetry.ts';

let server: http.Server;
let base: string;
/** Per path: the statuses still to answer before 200, and the requests seen. */
const script = new Map<string, { busy: number[]; seen: number; bodies: number[] }>();

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const s = script.get(req.url ?? '')!;
    s.seen++;
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
    });
    req.on('end', () => {
      s.bodies.push(n);
      const status = s.busy.shift();
      if (status !== undefined) res.writeHead(status, { 'Retry-After': '0' }).end('{"error":{"code":"busy","message":"later"}}');
      else res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

describe('fetchUnlessBusy', () => {
  it('retries 503 and 429 after Retry-After, resending the body', async () => {
    script.set('/a', { busy: [503, 429], seen: 0, bodies: [] });
    const res = await fetchUnlessBusy(new URL('/a', base), { method: 'PUT', body: new Uint8Array(1000) });
    expect(res.status).toBe(200);
    expect(script.get('/a')!.bodies).toEqual([1000, 1000, 1000]);
  });

  it(`gives up after ${BUSY_TRIES} tries with the last answer, and passes other errors through at once`, async () => {
    script.set('/b', { busy: Array(10).fill(503), seen: 0, bodies: [] });
    expect((await fetchUnlessBusy(new URL('/b', base))).status).toBe(503);
    expect(script.get('/b')!.seen).toBe(BUSY_TRIES);
    script.set('/c', { busy: [403], seen: 0, bodies: [] });
    expect((await fetchUnlessBusy(new URL('/c', base))).status).toBe(403);
    expect(script.get('/c')!.seen).toBe(1);
  });

  it('reads Retry-After as seconds, capped, and 1 s when it is not a number', () => {
    expect([retryAfterSeconds('0'), retryAfterSeconds('3'), retryAfterSeconds('3600'), retryAfterSeconds(null), retryAfterSeconds('Wed, 21 Oct')]).toEqual([
      0, 3, 10, 1, 1,
    ]);
  });
});
