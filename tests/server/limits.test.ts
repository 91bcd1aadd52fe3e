/**
 * Server limits against real clients: message rate per connection,
 * connections per address, concurrent uploads, shards indexed per encoder.
 * Each answers with an error code and the server keeps serving others.
 */
import fs from 'node:fs';
import http from 'node:http';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { autoEncode, BYTELESS, waitFor } from '../harness/poolKit.ts';
import { adminHeaders, startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

let clip: Uint8Array;
let server: TestServer | undefined;
const peers: WsPeer[] = [];

beforeAll(async () => {
  clip = fs.readFileSync(await fixture('av-2997'));
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

const track = <T extends WsPeer>(p: T) => (peers.push(p), p);

async function publish(s: TestServer): Promise<string> {
  const r = await upload(s.url, clip);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json.id as string;
}

/** A locate round trip: proof that the server still serves a well-behaved client. */
async function locates(p: WsPeer, contentId: string, requestId: number): Promise<void> {
  p.send({ type: 'locate', requestId, contentId, from: 0, count: 5 });
  const h = await p.next('holders', (m) => m.requestId === requestId);
  expect(h.shards.length).toBeGreaterThan(0);
}

describe('message rate', () => {
  it('a flood gets rate-limited errors, then the socket is closed with 1008; others are served throughout', async () => {
    const s = (server = await startTestServer());
    const id = await publish(s);
    const good = track(await WsPeer.viewer(s.url));
    const flooder = track(await WsPeer.viewer(s.url));
    for (let i = 0; i < 3000; i++) flooder.send({ type: 'heartbeat' });
    const err = await flooder.next('error', (m) => m.code === 'rate-limited');
    expect(err.message).toMatch(/messages\/s/);
    await locates(good, id, 1);
    expect((await flooder.closed).code).toBe(1008);
    await locates(good, id, 2);
    expect(s.refusals.rateLimited).toBeGreaterThanOrEqual(s.config.wsRateLimitedCloseAfter);
    expect(s.pool.peers.size).toBe(1);
  });

  it('a short burst over the limit is refused without closing the socket', async () => {
    const s = (server = await startTestServer({ wsMessagesPerSecond: 20, wsMessageBurst: 10, wsRateLimitedCloseAfter: 1000 }));
    const id = await publish(s);
    const p = track(await WsPeer.viewer(s.url));
    for (let i = 0; i < 30; i++) p.send({ type: 'heartbeat' });
    expect((await p.next('error', (m) => m.code === 'rate-limited')).code).toBe('rate-limited');
    await new Promise((r) => setTimeout(r, 1000)); // the bucket refills
    await locates(p, id, 7);
    expect(p.ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe('connections per address', () => {
  it('refuses connections over the per-address cap with 429 and gives the slot back on close', async () => {
    const s = (server = await startTestServer({ maxConnectionsPerIp: 3 }));
    const open = [track(await WsPeer.connect(s.url)), track(await WsPeer.connect(s.url)), track(await WsPeer.connect(s.url))];
    const refused = await WsPeer.connect(s.url).then(
      (p) => (track(p), 0),
      (e: Error) => Number(/Unexpected server response: (\d+)/.exec(e.message)?.[1]),
    );
    expect(refused).toBe(429);
    expect(s.refusals.tooManyConnections).toBe(1);
    open[0]!.close();
    await waitFor(() => s.connections().open === 2 || undefined, 'slot given back');
    track(await WsPeer.connect(s.url));
    expect(s.connections()).toEqual({ open: 3, addresses: 1 });
  });
});

describe('uploads', () => {
  it('refuses an upload beyond the concurrent-upload limit with 429 and JSON, and takes it once the first is done', async () => {
    const s = (server = await startTestServer({ maxConcurrentUploads: 1 }));
    const url = new URL('/api/contents', s.url);
    // The first upload sends half its body and waits: it holds the only slot.
    const first = http.request(url, {
      method: 'POST',
      headers: { 'Content-Length': clip.byteLength, 'Content-Type': 'application/octet-stream', ...adminHeaders() },
    });
    const firstDone = new Promise<{ status: number; body: string }>((resolve, reject) => {
      first.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      first.on('error', reject);
    });
    first.write(clip.subarray(0, clip.byteLength >> 1));
    await waitFor(() => fs.readdirSync(`${s.dataDir}/tmp`).length > 0 || undefined, 'first upload under way');

    const second = await upload(s.url, clip);
    expect(second.status).toBe(429);
    expect(second.json.error.code).toBe('too-many-uploads');
    expect(second.json.error.message).toMatch(/--max-concurrent-uploads/);

    first.end(clip.subarray(clip.byteLength >> 1));
    expect((await firstDone).status).toBe(201);
    expect((await upload(s.url, clip)).status).toBe(201);
  });
});

describe('holdings per encoder', () => {
  it('indexes at most maxHoldingsPerEncoder shards for one encoder', async () => {
    const s = (server = await startTestServer({ ...BYTELESS, heartbeatMs: 100, heartbeatTimeoutMs: 1000, maxHoldingsPerEncoder: 5 }));
    const id = await publish(s);
    const worker = track(await WsPeer.encoder(s.url));
    const jobs: Job[] = [];
    void autoEncode(worker, jobs);
    const map = await waitFor(async () => {
      const c = (await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
      return c.status === 'ready' ? c.shardMap : undefined;
    }, 'content ready');
    expect(s.pool.peers.get(worker.peerId)!.holdings.size).toBe(5);
    const holdings = map.shards.flatMap((sh) =>
      Object.entries(sh.renditions).map(([rendition, st]) => ({ key: { contentId: id, rendition, index: sh.index }, sha256: st.sha256!, size: st.size! })),
    );
    expect(holdings.length).toBeGreaterThan(20);
    const returning = track(await WsPeer.encoder(s.url, { holdings }));
    expect(s.pool.peers.get(returning.peerId)!.holdings.size).toBe(5);
    expect(s.pool.holders.size).toBeLessThanOrEqual(10);
  });
});
