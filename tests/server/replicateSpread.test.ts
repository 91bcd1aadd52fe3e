/**
 * Replication orders are spread over the able encoders: many shards turning
 * hot at once (one sweep) must not all be ordered from the one least-loaded
 * tab. Every order is answered by one message, and those answers count against
 * the tab's message rate limit: the churn simulation (tests/sim/churn.ts) saw
 * 426 orders to one encoder in one second, and encoders closed for flooding.
 */
import fs from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import type { ServerMessage } from '../../src/shared/protocol.ts';
import { fixture } from '../harness/fixtures.ts';
import { autoEncode, BYTELESS, waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

let server: TestServer | undefined;
const peers: WsPeer[] = [];
const timers: ReturnType<typeof setInterval>[] = [];

afterEach(async () => {
  for (const t of timers.splice(0)) clearInterval(t);
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

it('spreads the replication orders of many hot shards over the idle encoders', async () => {
  // Fake encoders with made-up hashes: no byte check (BYTELESS). One extra replica per hot shard.
  const s = (server = await startTestServer({
    heartbeatMs: 200,
    heartbeatTimeoutMs: 2000,
    cacheEnabled: false,
    ...BYTELESS,
    replicateAboveRate: 1,
    perReplicaRate: 0.001,
    maxReplicas: 2,
    demandHalfLifeMs: 2000,
  }));
  const r = await upload(s.url, fs.readFileSync(await fixture('av-2997')));
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  const id = r.json.id as string;
  const origin = await WsPeer.encoder(s.url);
  peers.push(origin);
  void autoEncode(origin, []);
  await waitFor(
    async () => (((await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string }).status === 'ready' ? true : undefined),
    'content ready',
  );
  const shards = s.pool.snapshot().contents[0]!.renditions[0]!.cached.length;

  // Four idle encoders that take orders and never answer: an order stays pending, so none is repeated.
  const spares = await Promise.all([0, 1, 2, 3].map(() => WsPeer.encoder(s.url)));
  peers.push(...spares);
  const orders = new Map<string, number>(spares.map((p) => [p.peerId, 0]));
  for (const p of spares) {
    p.ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as ServerMessage;
      if (m.type === 'replicate') orders.set(p.peerId, orders.get(p.peerId)! + 1);
    });
  }
  // Viewers watching the whole content at once: every shard of every rendition turns hot.
  for (let i = 0; i < 4; i++) {
    const v = await WsPeer.viewer(s.url);
    peers.push(v);
    let n = 0;
    const ask = () => v.send({ type: 'locate', requestId: n++, contentId: id, from: 0, count: shards });
    ask();
    timers.push(setInterval(ask, 100));
  }
  // Wait until the orders stop coming (each hot variant has its one order pending).
  const total = () => [...orders.values()].reduce((a, b) => a + b, 0);
  let last = -1;
  let since = Date.now();
  await waitFor(() => {
    if (total() !== last) [last, since] = [total(), Date.now()];
    return total() >= 20 && Date.now() - since > 1500 ? true : undefined;
  }, 'replication orders to settle');
  const counts = [...orders.values()];
  console.log(`replication orders per spare: ${counts.join(', ')}`);
  // Even within a sweep: no spare gets more than twice its share (all of them went to one spare before).
  expect(Math.max(...counts), JSON.stringify(counts)).toBeLessThanOrEqual((2 * total()) / spares.length);
  expect(Math.min(...counts), JSON.stringify(counts)).toBeGreaterThan(0);
});
