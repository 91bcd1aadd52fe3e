/**
 * Fuzzing the real server's HTTP surface, run as a child process with its
 * default limits (rate limits on), while WebSocket clients send random frames
 * and one client never reads what it is sent (tests/server/fuzz.test.ts
 * covers the WebSocket protocol message by message).
 *
 * Inputs are random methods on paths built from the API's patterns with
 * hostile segments (malformed percent-escapes, traversal, huge or odd ids and
 * indices), random query strings, random headers (tokens right, wrong and
 * malformed; Expect: 100-continue; Origin) and random bodies, including shard
 * PUT bodies with the running job's real upload token. The oracle: no answer
 * is a 500, every error answer (but HEAD's) is `{error:{code,message}}`
 * JSON, nothing is logged as a failed request, and after it all the server
 * answers a health request and its RSS has grown by less than a stated bound.
 *
 * Size: SHARDCAST_FUZZ_HTTP (requests, default 600). Seed: SHARDCAST_FUZZ_SEED
 * (printed first, so a failing run can be repeated).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_PATHS } from '../../src/shared/api.ts';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { rng } from '../harness/rng.ts';
import { publishFixture } from '../harness/serverPerTest.ts';
import { memoryOf, spawnServer, stopServer, type ServerProcess } from '../harness/serverProcess.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const REQUESTS = Number(process.env.SHARDCAST_FUZZ_HTTP ?? 600);
const SEED = Number(process.env.SHARDCAST_FUZZ_SEED ?? Date.now() % 2 ** 31);
const TOKEN = 'fuzz-http-admin-token';
const MiB = 2 ** 20;
const fmt = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
/**
 * RSS growth allowed over the run (600 requests of at most 64 KiB; 6000 random WebSocket frames of up to 64 KiB, the
 * flooders closed by the rate limit; a non-reading client). Measured on the 2-core machine: +38 to +57 MiB over four
 * runs (mostly the heap grown for the frames, not yet given back); unread answers queued without bound, or one leaked
 * copy of every frame, would add 190 MiB or more.
 */
const RSS_GROWTH_BOUND = 96 * MiB;

let srv: ServerProcess;
let dataDir: string;
let map: ShardMap;
let job: Job;
let encoder: WsPeer;

beforeAll(async () => {
  console.log(`fuzzHttp: seed ${SEED} (repeat with SHARDCAST_FUZZ_SEED=${SEED})`);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-fuzzhttp-'));
  srv = await spawnServer(dataDir, ['--admin-token', TOKEN, '--max-upload-bytes', String(4 * MiB), '--heartbeat-timeout-ms', '600000']);
  ({ map } = await publishFixture(srv.url, 'av-2997', TOKEN));
  // A running job, so that some shard PUTs carry a real upload token.
  encoder = await WsPeer.encoder(srv.url);
  job = (await encoder.next('job')).job;
}, 120_000);

afterAll(async () => {
  encoder?.kill();
  if (srv) await stopServer(srv);
  fs.rmSync(dataDir, { recursive: true, force: true });
});

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

/** Path segments a client could send: valid ones, and each kind of hostile one. */
function segment(r: Rand, valid: string): string {
  return pick(r, [
    valid,
    valid,
    '%E0%A4%A',
    '%',
    '%zz',
    '%00',
    '..%2F..%2Fetc%2Fpasswd',
    'x'.repeat(1 + Math.floor(r() * 5000)),
    '-1',
    '1e309',
    '99999999999999999999',
    encodeURIComponent('ünï©ødé'),
    '%2F',
    '',
  ]);
}

function randomPath(r: Rand): string {
  const pattern = pick(r, [...Object.values(API_PATHS), '/', '/publish', '/watch/:id', '/encode', '/assets/:id', '/api/:id', '/:id']);
  const valid: Record<string, string> = { id: map.contentId, rendition: job.rendition, index: String(job.shards[0]!.index) };
  return pattern.replace(/:([a-zA-Z]+)/g, (_, k: string) => segment(r, valid[k] ?? 'x'));
}

function randomQuery(r: Rand): string {
  const keys = ['start', 'end', 'tracks', 'rendition', 'token', 'lead', 'tail', 'name', 'shardDuration', 'renditions', 'from', 'zz'];
  const values = ['0', '2', '1.5', '-1', 'NaN', 'Infinity', '1e309', '', 'both', 'video', 'audio', '%E0%A4%A', '%', 'x'.repeat(3000), '[{"id":1}]'];
  const n = Math.floor(r() * 5);
  const parts = Array.from({ length: n }, () => `${pick(r, keys)}=${pick(r, values)}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

function randomHeaders(r: Rand, method: string): Record<string, string> {
  const h: Record<string, string> = {};
  if (r() < 0.5) h.Authorization = pick(r, [`Bearer ${job.uploadToken}`, 'Bearer forged', 'Basic eA==', 'Bearer', `Bearer ${'t'.repeat(4000)}`]);
  // Admin rights only where they cannot delete the content under the run.
  if (method === 'POST' && r() < 0.3) h.Authorization = `Bearer ${TOKEN}`;
  if (r() < 0.2) h.Origin = pick(r, ['https://evil.example', 'null', srv.url]);
  if (r() < 0.3) h['Accept-Encoding'] = pick(r, ['br', 'gzip;q=0.5, br;q=0', '*', 'nonsense;q=x']);
  if (r() < 0.2) h['Access-Control-Request-Method'] = 'PUT';
  return h;
}

function randomBody(r: Rand): Uint8Array {
  const size = pick(r, [0, 1, 100, 4096, 65536]);
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(r() * 256);
  // Sometimes the start of an MP4, so parsers get further in.
  if (size >= 8 && r() < 0.3) b.set([0, 0, 0, 24, 0x66, 0x74, 0x79, 0x70]);
  return b;
}

interface Outcome {
  what: string;
  status: number;
  body: string;
  contentType: string;
}

async function oneRequest(r: Rand): Promise<Outcome | undefined> {
  const method = pick(r, ['GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'PUT', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);
  const url = `${srv.url}${randomPath(r)}${randomQuery(r)}`;
  const headers = randomHeaders(r, method);
  const body = method === 'POST' || method === 'PUT' ? randomBody(r) : undefined;
  const what = `${method} ${url.slice(srv.url.length, srv.url.length + 160)} ${JSON.stringify(Object.keys(headers))} body ${body?.length ?? '-'}`;
  try {
    const res = await fetch(url, { method, headers, ...(body && { body: body as BodyInit }), signal: AbortSignal.timeout(20_000) });
    return { what, status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? '' };
  } catch (e) {
    // A refusal before the body (Connection: close) may cut a body mid-send: the client sees a closed socket, not a server fault.
    if (body && body.length > 0) return undefined;
    throw new Error(`${what}: ${(e as Error).message}`);
  }
}

/** A WebSocket client that sends random frames as fast as it can until the server closes it. */
async function floodRandom(r: Rand, frames: number): Promise<number> {
  const ws = new WebSocket(`${srv.url.replace(/^http/, 'ws')}/ws`);
  const closed = new Promise<number>((res) => ws.once('close', (code) => res(code)));
  ws.on('error', () => {});
  await new Promise((res) => ws.once('open', res));
  const locate = { type: 'locate', requestId: 1, contentId: map.contentId, from: 0, count: 10_000 };
  const samples: (() => string | Buffer)[] = [
    () => JSON.stringify({ type: 'hello', protocol: 1, role: pick(r, ['viewer', 'encoder', 'admin']) }),
    () => JSON.stringify({ ...locate, from: Math.floor(r() * 2 ** 31), renditions: Array(16).fill(pick(r, map.renditions).id) }),
    () => JSON.stringify({ ...locate, requestId: -1 }),
    () => Buffer.from(randomBody(r)),
    () => '{"type":"locate"'.repeat(1 + Math.floor(r() * 100)),
    () => JSON.stringify({ type: 'signal', to: 'x', data: { a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } } }),
  ];
  for (let i = 0; i < frames && ws.readyState === WebSocket.OPEN; i++) ws.send(pick(r, samples)());
  ws.close();
  return closed;
}

/** A joined viewer that never reads: asks for the largest answers it can, then waits to be cut off or rate-limited. */
async function neverReads(): Promise<number> {
  const ws = new WebSocket(`${srv.url.replace(/^http/, 'ws')}/ws`);
  const closed = new Promise<number>((res) => ws.once('close', (code) => res(code)));
  ws.on('error', () => {});
  await new Promise((res) => ws.once('open', res));
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, role: 'viewer' }));
  await new Promise((res) => setTimeout(res, 100));
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const locate = JSON.stringify({ type: 'locate', requestId: 7, contentId: map.contentId, from: 0, count: 10_000 });
  for (let i = 0; i < 5000 && ws.readyState === WebSocket.OPEN; i++) ws.send(locate);
  await new Promise((res) => setTimeout(res, 2000));
  (ws as unknown as { _socket: { resume(): void } })._socket.resume();
  ws.close();
  return closed;
}

describe('HTTP fuzz', () => {
  it('answers random requests with JSON errors, never a 500, and stays up beside WebSocket floods and a client that never reads', async () => {
    const r = rng(SEED);
    const before = memoryOf(srv)!;
    const ws = Promise.all([floodRandom(rng(SEED + 1), 3000), floodRandom(rng(SEED + 2), 3000), neverReads()]);
    const outcomes: Outcome[] = [];
    let cut = 0;
    const workers = Array.from({ length: 6 }, async () => {
      while (outcomes.length + cut < REQUESTS) {
        const o = await oneRequest(r);
        if (o) outcomes.push(o);
        else cut++;
      }
    });
    await Promise.all(workers);
    const wsCodes = await ws;
    const after = memoryOf(srv)!;

    const byStatus = new Map<number, number>();
    for (const o of outcomes) byStatus.set(o.status, (byStatus.get(o.status) ?? 0) + 1);
    console.log(
      `fuzzHttp (seed ${SEED}): ${outcomes.length} answered, ${cut} cut mid-body; statuses ${[...byStatus].map(([s, n]) => `${s}x${n}`).join(' ')}; ` +
        `WebSocket closes ${wsCodes.join(',')}; RSS ${fmt(before.rss)} -> ${fmt(after.rss)}`,
    );
    for (const o of outcomes) {
      expect({ what: o.what, status: o.status }).not.toEqual({ what: o.what, status: 500 });
      if (o.status < 400 || o.what.startsWith('HEAD')) continue;
      expect({ what: o.what, contentType: o.contentType }).toEqual({ what: o.what, contentType: expect.stringMatching(/^application\/json/) });
      const err = (JSON.parse(o.body) as { error?: { code?: unknown; message?: unknown } }).error;
      expect({ what: o.what, code: typeof err?.code, message: typeof err?.message }).toEqual({ what: o.what, code: 'string', message: 'string' });
    }
    // The flooders were stopped by the rate limit (1008) or finished; the non-reader was cut off (1006) or rate-limited.
    for (const code of wsCodes) expect([1000, 1005, 1006, 1008]).toContain(code);
    expect(srv.stderr.filter((l) => /request failed|websocket message failed|^\s+at /.test(l))).toEqual([]);
    const health = await fetch(`${srv.url}/api/health`);
    expect(health.status).toBe(200);
    expect(after.rss - before.rss).toBeLessThan(RSS_GROWTH_BOUND);
  }, 300_000);
});
