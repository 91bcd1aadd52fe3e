/**
 * The pool WebSocket module (signaling/ws.ts) in front of a fake pool: the
 * upgrade checks, the hello handshake and join token, invalid messages, the
 * per-connection rate limit, and the join token added to job URLs.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ServerMessage } from '../../src/shared/protocol.ts';
import { loadConfig, type ServerConfig } from '../../signaling/config.ts';
import { newRefusals } from '../../signaling/context.ts';
import type { PoolManager } from '../../signaling/PoolManager.ts';
import { attachPoolSocket, type PoolSocket } from '../../signaling/ws.ts';

interface FakeConn {
  send(msg: ServerMessage): void;
}

/** Records what the socket module hands the pool; answers hello with a welcome-like job message. */
function fakePool() {
  const handled: unknown[] = [];
  const left: string[] = [];
  let conn: FakeConn | undefined;
  const pool = {
    counters: { badMessages: 0 },
    badMessage() {
      pool.counters.badMessages++;
    },
    join(c: FakeConn) {
      conn = c;
      return 'peer1';
    },
    handle(_id: string, msg: unknown) {
      handled.push(msg);
    },
    leave(id: string) {
      left.push(id);
    },
  };
  return { pool, handled, left, conn: () => conn! };
}

let server: http.Server | undefined;
let socket: PoolSocket | undefined;
afterEach(async () => {
  socket?.close();
  server?.closeAllConnections();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
});

async function start(overrides: Partial<ServerConfig> = {}, allowedOrigins: string[] = []) {
  const config = loadConfig([], {}, { log: false, ...overrides });
  const fake = fakePool();
  const refusals = newRefusals();
  server = http.createServer();
  socket = attachPoolSocket(server, {
    config,
    pool: fake.pool as unknown as PoolManager,
    refusals,
    allowedOrigins,
    tokens: { adminToken: '', joinToken: config.joinToken, viewerToken: config.viewerToken },
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { ...fake, refusals, url };
}

/** Opens a socket and collects what it receives. */
async function open(url: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, { headers });
  const got: { type: string; code?: string; job?: { sourceUrl: string } }[] = [];
  const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
  ws.on('message', (d) => got.push(JSON.parse(String(d))));
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  const next = async (n: number) => {
    for (let i = 0; i < 200 && got.length < n; i++) await new Promise((r) => setTimeout(r, 5));
    return got;
  };
  return { ws, got, next, closed };
}

function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('error', () => {});
  });
}

const hello = (extra: object = {}) => JSON.stringify({ type: 'hello', protocol: 1, role: 'viewer', ...extra });

describe('pool socket', () => {
  it('refuses other paths, foreign origins and connections over the limit, with coded JSON', async () => {
    const s = await start({ maxConnectionsPerIp: 1 });
    const wrong = await upgradeStatus(`${s.url}/nope`);
    expect(wrong.status).toBe(404);
    expect(JSON.parse(wrong.body).error.code).toBe('not-found');
    const foreign = await upgradeStatus(`${s.url}/ws`, { Origin: 'https://evil.example' });
    expect([foreign.status, JSON.parse(foreign.body).error.code]).toEqual([403, 'bad-origin']);
    const first = await open(`${s.url}/ws`);
    const second = await upgradeStatus(`${s.url}/ws`);
    expect([second.status, JSON.parse(second.body).error.code]).toEqual([429, 'too-many-connections']);
    expect(s.refusals).toMatchObject({ badOrigin: 1, tooManyConnections: 1 });
    expect(socket!.connections()).toEqual({ open: 1, addresses: 1 });
    first.ws.close();
  });

  it('wants hello first, answers bad JSON with a code, then hands messages to the pool', async () => {
    const s = await start();
    const c = await open(`${s.url}/ws`);
    c.ws.send('{nope');
    c.ws.send(JSON.stringify({ type: 'heartbeat' }));
    expect((await c.next(2)).map((m) => m.code)).toEqual(['bad-json', 'hello-first']);
    expect(s.pool.counters.badMessages).toBe(1);
    c.ws.send(hello());
    c.ws.send(JSON.stringify({ type: 'heartbeat' }));
    for (let i = 0; i < 100 && s.handled.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(s.handled).toEqual([{ type: 'heartbeat' }]);
    c.ws.close();
    await c.closed;
    for (let i = 0; i < 100 && s.left.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(s.left).toEqual(['peer1']);
  });

  it('with a join token: a wrong one is refused and closed (1008); jobs carry the token in their source URL', async () => {
    const s = await start({ joinToken: 'sesame' });
    const bad = await open(`${s.url}/ws`);
    bad.ws.send(hello({ token: 'nope' }));
    expect((await bad.next(1))[0]?.code).toBe('forbidden');
    expect(await bad.closed).toBe(1008);
    expect(s.refusals.badJoinToken).toBe(1);

    const good = await open(`${s.url}/ws`);
    good.ws.send(hello({ token: 'sesame' }));
    for (let i = 0; i < 100 && !s.conn(); i++) await new Promise((r) => setTimeout(r, 5));
    s.conn().send({ type: 'job', job: { sourceUrl: '/api/contents/c/source?start=0.000000' } as never });
    expect((await good.next(1))[0]?.job?.sourceUrl).toBe('/api/contents/c/source?start=0.000000&token=sesame');
    good.ws.close();
  });

  it('drops messages over the rate, says so once per 50, and closes after too many', async () => {
    const s = await start({ wsMessagesPerSecond: 1, wsMessageBurst: 2, wsRateLimitedCloseAfter: 5 });
    const c = await open(`${s.url}/ws`);
    for (let i = 0; i < 8; i++) c.ws.send(JSON.stringify({ type: 'heartbeat' }));
    expect(await c.closed).toBe(1008);
    expect(c.got.filter((m) => m.code === 'rate-limited')).toHaveLength(1);
    expect(s.refusals.rateLimited).toBeGreaterThanOrEqual(5);
  });
});
