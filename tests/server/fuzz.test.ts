/**
 * Fuzzing the real server, run as a child process, over a real WebSocket and
 * real HTTP: random bytes, random JSON, valid messages of every client type
 * with mutated fields, binary, huge and deeply nested frames, and floods; then
 * truncated and mutated media uploads. A well-behaved viewer is served
 * throughout. The server must stay up, log no internal error, answer every
 * invalid message with an `error`, keep its memory bounded, and leave nothing
 * half-written in DATA_DIR.
 *
 * Sizes: SHARDCAST_FUZZ_INPUTS (WebSocket inputs, default 2000),
 * SHARDCAST_FUZZ_UPLOADS (uploads, default 20), SHARDCAST_FUZZ_SEED.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES, parseClientMessage, type ClientMessage } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture, type FixtureName } from '../harness/fixtures.ts';
import { memoryOf, spawnServer, stopServer, type ServerProcess } from '../harness/serverProcess.ts';
import { fakeHash, WsPeer } from '../harness/wsPeer.ts';

const INPUTS = Number(process.env.SHARDCAST_FUZZ_INPUTS ?? 2000);
const UPLOADS = Number(process.env.SHARDCAST_FUZZ_UPLOADS ?? 20);
const SEED = Number(process.env.SHARDCAST_FUZZ_SEED ?? Date.now() % 2 ** 31);
const TOKEN = 'fuzz-admin-token';
const MAX_UPLOAD = 4 * 2 ** 20;
const MiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

let srv: ServerProcess;
let dataDir: string;
let contentId: string;
let map: ShardMap;
let peak = 0;
let sampler: NodeJS.Timeout;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-fuzz-'));
  // Rate limits are tested in limits.test.ts; here they would only hide the handlers from the fuzzer.
  srv = await spawnServer(dataDir, ['--admin-token', TOKEN, '--max-upload-bytes', String(MAX_UPLOAD), '--ws-messages-per-second', '1000000', '--ws-message-burst', '1000000', '--max-concurrent-uploads', '2']);
  sampler = setInterval(() => (peak = Math.max(peak, memoryOf(srv)?.rss ?? 0)), 100);
  const res = await fetch(`${srv.url}/api/contents`, { method: 'POST', body: fs.readFileSync(await fixture('av-2997')) as unknown as BodyInit, headers: { Authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(201);
  contentId = ((await res.json()) as { id: string }).id;
  map = ((await (await fetch(`${srv.url}/api/contents/${contentId}`)).json()) as { shardMap: ShardMap }).shardMap;
}, 120_000);

afterAll(async () => {
  clearInterval(sampler);
  if (srv) await stopServer(srv);
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** One valid example of every client message type, about the published content. */
function examples(): ClientMessage[] {
  const key = { contentId, rendition: map.renditions[0]!.id, index: 1 };
  const sha256 = fakeHash('fuzz');
  return [
    { type: 'hello', protocol: 1, role: 'encoder', capabilities: { engines: [{ name: 'fuzz', codecs: ['h264', 'aac'], speed: 2 }], maxJobs: 1 }, holdings: [{ key, sha256, size: 1000 }] },
    { type: 'hello', protocol: 1, role: 'viewer', peerId: 'abc', token: 't' },
    { type: 'heartbeat', activeJobs: 1, heldBytes: 10, peers: 2, serving: 1 },
    { type: 'job-progress', jobId: 'j1', progress: 0.5, fps: 30 },
    { type: 'shard-ready', jobId: 'j1', key, sha256, size: 1234, engine: 'fuzz' },
    { type: 'job-done', jobId: 'j1' },
    { type: 'job-failed', jobId: 'j1', reason: 'fuzz' },
    { type: 'locate', requestId: 1, contentId, from: 0, count: 10 },
    { type: 'signal', to: 'abc', data: { sdp: 'v=0', type: 'offer' } },
    { type: 'shard-dropped', key },
    { type: 'shard-stored', key, sha256, size: 1234 },
    { type: 'replicate-failed', key, reason: 'fuzz' },
    { type: 'report-peer', peerId: 'abc', key, reason: 'bad bytes' },
  ];
}

type Path = (string | number)[];
function leafPaths(v: unknown, prefix: Path = []): Path[] {
  if (v && typeof v === 'object') {
    const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
    return [prefix, ...entries.flatMap(([k, x]) => leafPaths(x, [...prefix, k]))];
  }
  return [prefix];
}

const nasty = fc.constantFrom<unknown>(-1, 0, 1e308, -1e308, 2 ** 53 + 2, 0.5, '', 'x'.repeat(100), '../../etc/passwd', '__proto__', null, true, [], {}, [[[[]]]], { __proto__: 1 }, '\u0000', '\ud800');
const value = fc.oneof(nasty, fc.jsonValue({ maxDepth: 3 }), fc.string({ maxLength: 80 }), fc.integer(), fc.double());
const mutation = fc.record({ op: fc.constantFrom('set', 'delete', 'add', 'retype'), at: fc.nat(), key: fc.string({ maxLength: 12 }), value });

function mutate(msg: ClientMessage, muts: { op: string; at: number; key: string; value: unknown }[]): unknown {
  const root = structuredClone(msg) as unknown as Record<string, unknown>;
  for (const m of muts) {
    const paths = leafPaths(root);
    const p = paths[m.at % paths.length]!;
    if (p.length === 0 && m.op !== 'add') continue;
    const parent = p.slice(0, -1).reduce<any>((o, k) => o?.[k], root);
    const last = p[p.length - 1]!;
    if (parent === null || typeof parent !== 'object') continue;
    if (m.op === 'set') parent[last] = m.value;
    else if (m.op === 'delete') delete parent[last];
    else if (m.op === 'retype') parent[last] = JSON.stringify(parent[last] ?? null);
    else {
      const target = p.reduce<any>((o, k) => o?.[k], root);
      if (target && typeof target === 'object' && !Array.isArray(target)) target[m.key] = m.value;
    }
  }
  return root;
}

interface Input {
  kind: string;
  data: string | Buffer;
}

function inputs(n: number, seed: number): Input[] {
  const ex = examples();
  const deep = (d: number) => `{"type":"signal","to":"abc","data":{"a":${'['.repeat(d)}${']'.repeat(d)}}}`;
  const arb: fc.Arbitrary<Input> = fc.oneof(
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => ({ kind: 'random bytes (binary)', data: Buffer.from(b) })) },
    { weight: 2, arbitrary: fc.string({ maxLength: 300, unit: 'binary' }).map((s) => ({ kind: 'random text', data: s })) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => ({ kind: 'random JSON', data: JSON.stringify(v) ?? 'null' })) },
    { weight: 1, arbitrary: fc.constantFrom(...ex).map((m) => ({ kind: 'valid message', data: JSON.stringify(m) })) },
    { weight: 10, arbitrary: fc.tuple(fc.constantFrom(...ex), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([m, muts]) => ({ kind: 'mutated message', data: JSON.stringify(mutate(m, muts)) ?? 'null' })) },
    { weight: 1, arbitrary: fc.constantFrom(...ex).map((m) => ({ kind: 'valid message as binary frame', data: Buffer.from(JSON.stringify(m)) })) },
    { weight: 1, arbitrary: fc.integer({ min: 1000, max: 100_000 }).map((d) => ({ kind: 'deeply nested', data: deep(d) })) },
    { weight: 1, arbitrary: fc.constantFrom(MAX_MESSAGE_BYTES - 100, MAX_MESSAGE_BYTES + 1, 4 * MAX_MESSAGE_BYTES).map((size) => ({ kind: 'huge frame', data: JSON.stringify({ type: 'job-failed', jobId: 'j1', reason: 'x'.repeat(size) }) })) },
  );
  return fc.sample(arb, { numRuns: n, seed });
}

/** A fresh socket for a batch, after optionally joining. */
async function open(url: string): Promise<{ ws: WebSocket; got: { code?: string; type: string }[]; closed: Promise<number> }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws`);
  const got: { code?: string; type: string }[] = [];
  ws.on('message', (d) => got.push(JSON.parse(d.toString()) as { type: string }));
  const closed = new Promise<number>((r) => ws.on('close', (c) => r(c)));
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, got, closed };
}

describe('fuzzing', () => {
  it('survives random and mutated WebSocket input while serving a well-behaved viewer', async () => {
    const all = inputs(INPUTS, SEED);
    const good = await WsPeer.viewer(srv.url);
    let goodLocates = 0;
    let goodFailure: unknown;
    let stop = false;
    const goodLoop = (async () => {
      for (let i = 1; !stop; i++) {
        try {
          good.send({ type: 'locate', requestId: 1_000_000 + i, contentId, from: 0, count: 3 });
          await good.next('holders', (m) => m.requestId === 1_000_000 + i, 20_000);
          goodLocates++;
        } catch (e) {
          goodFailure = e;
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const before = memoryOf(srv)!;
    const stats = { sent: 0, invalid: 0, answered: 0, closedBySever: 0 } as Record<string, number>;
    const byKind = new Map<string, number>();
    const BATCH = 12; // fewer than the server's 20 consecutive bad messages before it hangs up
    for (let b = 0; b < all.length; b += BATCH) {
      const batch = all.slice(b, b + BATCH);
      const c = await open(srv.url);
      // Half the batches join first, so the pool's handlers see the messages too.
      if ((b / BATCH) % 2 === 0) {
        c.ws.send(JSON.stringify(examples()[(b / BATCH) % 4 === 0 ? 0 : 1]));
      }
      let expectedErrors = 0;
      for (const inp of batch) {
        byKind.set(inp.kind, (byKind.get(inp.kind) ?? 0) + 1);
        stats.sent!++;
        if (parseClientMessage(inp.data instanceof Buffer ? new Uint8Array(inp.data) : inp.data).ok === false && Buffer.byteLength(inp.data) <= MAX_MESSAGE_BYTES) {
          expectedErrors++;
          stats.invalid!++;
        }
        c.ws.send(inp.data, { binary: inp.data instanceof Buffer });
      }
      // A sentinel that always gets an error: the replies to the batch come before its own.
      c.ws.send(JSON.stringify({ type: 'locate', requestId: 424242, contentId: '!' }));
      const errorsIn = () => c.got.filter((m) => m.type === 'error').length;
      const code = await Promise.race([
        c.closed,
        (async () => {
          const end = Date.now() + 20_000;
          while (errorsIn() < expectedErrors + 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
          await new Promise((r) => setTimeout(r, 20)); // anything extra (an internal error) shows up too
          return 0;
        })(),
      ]);
      if (code === 0) {
        const errors = c.got.filter((m) => m.type === 'error' && m.code !== 'internal').length - 1;
        expect(c.got.filter((m) => m.type === 'error' && m.code === 'internal'), `internal error; inputs ${JSON.stringify(batch.map((i) => String(i.data).slice(0, 300)))}; server log:\n${srv.stderr.slice(-10).join('\n')}`).toEqual([]);
        expect(errors).toBeGreaterThanOrEqual(expectedErrors);
        stats.answered! += expectedErrors;
        c.ws.terminate();
      } else {
        // Only a frame over maxPayload may end a connection here (1009, or 1006 when the server drops
        // the socket at once rather than read the rest of the frame).
        const oversized = batch.some((i) => Buffer.byteLength(i.data) > MAX_MESSAGE_BYTES);
        expect({ code, oversized, seed: SEED }).toEqual({ code: expect.toBeOneOf([1006, 1009]), oversized: true, seed: SEED });
        stats.closedBySever!++;
      }
    }
    // A flood from several sockets at once, each well past any sane rate.
    const floods = await Promise.all([0, 1, 2, 3].map(() => open(srv.url)));
    const hello = JSON.stringify(examples()[1]);
    for (const f of floods) {
      f.ws.send(hello);
      for (let i = 0; i < 5000; i++) f.ws.send(i % 2 ? '{"type":"heartbeat"}' : JSON.stringify({ type: 'locate', requestId: i, contentId, from: 0, count: 50 }));
    }
    stats.sent! += 20_000;
    await Promise.all(floods.map((f) => new Promise((r) => setTimeout(r, 100)).then(() => f.ws.terminate())));

    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await goodLoop;
    good.kill();
    const after = memoryOf(srv)!;
    console.log(
      `fuzz (seed ${SEED}): ${stats.sent} messages (${[...byKind].map(([k, n]) => `${k} ${n}`).join(', ')}, flood 20000); ` +
        `${stats.invalid} invalid, ${stats.answered} answered with error; ${stats.closedBySever} sockets closed by the server; ` +
        `viewer served ${goodLocates} locates; server RSS ${MiB(before.rss)} before, ${MiB(after.rss)} after, peak ${MiB(Math.max(peak, after.peak))}`,
    );
    expect(goodFailure).toBeUndefined();
    expect(goodLocates).toBeGreaterThan(0);
    expect(srv.exit).toBeUndefined();
    expect(srv.stderr.filter((l) => /failed:|Unhandled|Error/.test(l))).toEqual([]);
    // Bounded: what is left after the run is not growing with the inputs.
    expect(after.rss - before.rss).toBeLessThan(256 * 2 ** 20);
    const pool = (await (await fetch(`${srv.url}/api/pool`)).json()) as { peers?: unknown[]; encoders?: unknown[] };
    expect(pool).toBeTruthy();
  }, 300_000);

  it('survives truncated and mutated media uploads and leaves nothing behind', async () => {
    const sources: FixtureName[] = ['av-2997', 'mkv', 'webm', 'a-only'];
    const files = await Promise.all(sources.map(async (n) => new Uint8Array(fs.readFileSync(await fixture(n)))));
    const mutation = fc.record({
      file: fc.nat({ max: files.length - 1 }),
      op: fc.constantFrom('truncate', 'flip', 'zero', 'splice', 'duplicate', 'oversize'),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      len: fc.integer({ min: 1, max: 4096 }),
      byte: fc.integer({ min: 0, max: 255 }),
    });
    const cases = fc.sample(mutation, { numRuns: UPLOADS, seed: SEED });
    const statuses = new Map<number, number>();
    const published: string[] = [contentId];
    for (const m of cases) {
      const src = files[m.file]!;
      const at = Math.floor(m.at * src.byteLength);
      let body: Uint8Array;
      if (m.op === 'truncate') body = src.subarray(0, at);
      else if (m.op === 'oversize') body = new Uint8Array(MAX_UPLOAD + 1);
      else if (m.op === 'duplicate') body = Buffer.concat([src.subarray(0, at), src.subarray(Math.max(0, at - m.len))]);
      else {
        body = new Uint8Array(src);
        for (let i = at; i < Math.min(body.length, at + m.len); i++) {
          if (m.op === 'flip') body[i] = body[i]! ^ (m.byte || 1);
          else if (m.op === 'zero') body[i] = 0;
          else body[i] = (m.byte * (i + 7)) & 255;
        }
      }
      let res: Response;
      try {
        res = await fetch(`${srv.url}/api/contents`, { method: 'POST', body: body as unknown as BodyInit, headers: { Authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(60_000) });
      } catch (e) {
        // An oversize body is answered 413 from its Content-Length and the socket closed while
        // fetch is still sending: fetch may report the broken pipe instead of the answer.
        expect(m.op, String((e as Error).cause ?? e)).toBe('oversize');
        statuses.set(0, (statuses.get(0) ?? 0) + 1);
        continue;
      }
      const json = (await res.json()) as { id?: string; error?: { code: string; message: string } };
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      expect([201, 400, 413, 415, 422], `${m.op} of ${sources[m.file]}: ${JSON.stringify(json)}`).toContain(res.status);
      if (res.status === 201) published.push(json.id!);
      else expect(json.error?.code).toBeTruthy();
    }
    console.log(`upload fuzz (seed ${SEED}): ${cases.length} uploads; statuses ${[...statuses].map(([s, n]) => `${s}x${n}`).join(' ')}`);
    expect(srv.exit).toBeUndefined();
    expect(srv.stderr.filter((l) => /failed:|Unhandled|Error/.test(l))).toEqual([]);
    // Nothing but whole contents: no staging directories, no temp uploads.
    expect(fs.readdirSync(path.join(dataDir, 'tmp'))).toEqual([]);
    expect(fs.readdirSync(path.join(dataDir, 'contents')).sort()).toEqual([...published].sort());
    for (const id of published) expect((await fetch(`${srv.url}/api/contents/${id}`)).status).toBe(200);
  }, 300_000);
});
