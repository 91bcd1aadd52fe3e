/**
 * Server options the README documents, against the real server: `--help`
 * lists every option of README's tables with the same default; `--ice-servers`,
 * `--trust-proxy` and `--max-connections` given as flags to a real server
 * process; the export limits (exportMaxBytes, exportMaxConcurrent) with real
 * cached shards made by native ffmpeg.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type WebSocket from 'ws';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ffprobeJson, fixture } from '../harness/fixtures.ts';
import { waitFor } from '../harness/poolKit.ts';
import { completeJob, nativeCaps, openSocket, type Upgrade } from '../harness/realShards.ts';
import { spawnServer, stopServer, type ServerProcess } from '../harness/serverProcess.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

const procs: ServerProcess[] = [];
const sockets: WebSocket[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const ws of sockets.splice(0)) ws.terminate();
});
afterAll(async () => {
  for (const p of procs.splice(0)) await stopServer(p);
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function spawn(args: string[]): Promise<ServerProcess> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-options-'));
  dirs.push(dir);
  const p = await spawnServer(dir, args);
  procs.push(p);
  return p;
}

/** A socket that must open; kept for the test's end. */
function opened(u: Upgrade): WebSocket {
  if (!u.ok) throw new Error(`refused: ${u.status} ${JSON.stringify(u.body)}`);
  sockets.push(u.ws);
  return u.ws;
}

function refused(u: Upgrade): { status: number; code: string | undefined; message: string | undefined } {
  if (u.ok) {
    sockets.push(u.ws);
    return { status: 101, code: undefined, message: undefined };
  }
  return { status: u.status, code: u.body.error?.code, message: u.body.error?.message };
}

/** A README default as the value --help prints (JSON), or undefined where the README describes a computed default. */
function readmeDefault(flag: string, text: string): unknown {
  const t = text.replace(/`/g, '').trim();
  const bytes = /^(\d+) (GiB|MiB)$/.exec(t);
  if (bytes) return Number(bytes[1]) * 2 ** (bytes[2] === 'GiB' ? 30 : 20);
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  if (t === 'true' || t === 'false') return t === 'true';
  if (t.startsWith('[')) return JSON.parse(t);
  // "none (...)", "the request's own host", "generated into ...": the option is empty unless set.
  if (/^(none|the request|generated)/.test(t)) return '';
  // A duration in prose ("2 min", "6 s") for an option in ms; a rate ("3 requests/s", "0.5/s").
  const d = /^(\d+(?:\.\d+)?)\s*(min|s|requests\/s|\/s)?$/.exec(t);
  if (d) {
    const n = Number(d[1]);
    if (flag.endsWith('-ms')) return d[2] === 'min' ? n * 60_000 : d[2] === 's' ? n * 1000 : n;
    return n;
  }
  if (t === './data') return undefined;
  throw new Error(`cannot read the README default "${text}" of ${flag}`);
}

describe('--help', () => {
  it('lists every option of the README (server options table and pool policies) with its environment variable and the same default', async () => {
    const { stdout } = await run('npx', ['tsx', 'signaling/main.ts', '--help'], { cwd: ROOT, env: { ...process.env, NODE_ENV: 'test' } });
    const help = new Map<string, { env: string; def: unknown }>();
    for (const line of stdout.split('\n')) {
      const m = /^\s+(--[a-z-]+)\s+(SHARDCAST_[A-Z_]+)\s+default (.+)$/.exec(line);
      if (m) help.set(m[1]!, { env: m[2]!, def: JSON.parse(m[3]!) });
    }
    expect(help.size).toBeGreaterThan(30);
    expect(stdout).toMatch(/PORT and DATA_DIR are read too/);

    // The server options table: flag(s) | environment | default | meaning.
    const table = README.slice(README.indexOf('| flag | environment | default | meaning |'));
    const lines = table.split('\n').slice(2);
    const rows = lines.slice(
      0,
      lines.findIndex((l) => !l.startsWith('|')),
    );
    const checked: string[] = [];
    for (const row of rows) {
      const [flags, envs, defs] = row
        .split('|')
        .slice(1, 4)
        .map((c) => c.trim());
      const fl = flags!.split(' / ').map((f) => f.replace(/`/g, ''));
      const en = envs!.split(' / ').map((e) => e.replace(/`/g, ''));
      const df = fl.length > 1 ? defs!.split(' / ') : [defs!];
      expect(df.length, row).toBe(fl.length);
      for (const [i, f] of fl.entries()) {
        const h = help.get(f);
        expect(h, `${f} in --help`).toBeDefined();
        const env = en[i]!;
        if (env.startsWith('_')) expect(h!.env.endsWith(env), `${f}: ${h!.env} vs ${env}`).toBe(true);
        else if (env.startsWith('SHARDCAST_')) expect(h!.env, f).toBe(env);
        else expect(['PORT', 'DATA_DIR']).toContain(env);
        const want = readmeDefault(f, df[i]!);
        if (want === undefined) expect(String(h!.def), f).toMatch(/\/data$/);
        else expect(h!.def, `${f}: README says ${df[i]}`).toEqual(want);
        checked.push(f);
      }
    }
    expect(checked).toEqual(expect.arrayContaining(['--port', '--data-dir', '--ice-servers', '--trust-proxy', '--max-connections', '--export-max-concurrent']));
    expect(checked.length).toBeGreaterThanOrEqual(20);

    // Pool policies: "`--flag` (default)" in the prose.
    const policies = README.slice(README.indexOf('## Pool policies'), README.indexOf('## API'));
    const inProse = [...policies.matchAll(/`(--[a-z-]+)` \(([^)]+)\)/g)];
    expect(inProse.length).toBeGreaterThanOrEqual(15);
    for (const [, f, d] of inProse) {
      expect(help.get(f!), `${f} in --help`).toBeDefined();
      expect(help.get(f!)!.def, `${f}: README says (${d})`).toEqual(readmeDefault(f!, d!));
    }
  }, 60_000);
});

describe('network options on a real server process', () => {
  it('--ice-servers reach tabs in welcome; --trust-proxy makes per-address limits count X-Forwarded-For; --max-connections caps the total', async () => {
    const ice = [{ urls: 'stun:stun.example.org:3478' }, { urls: ['turn:turn.example.org:3478?transport=udp'], username: 'u', credential: 'c' }];
    const p = await spawn(['--ice-servers', JSON.stringify(ice), '--trust-proxy', 'true', '--max-connections-per-ip', '2', '--max-connections', '4']);
    const v = await WsPeer.connect(p.url);
    sockets.push(v.ws);
    const w = await v.hello({ role: 'viewer' });
    expect(w.iceServers).toEqual(ice);
    v.close();
    await v.closed;
    await waitFor(async () => ((await (await fetch(`${p.url}/api/health`)).json()).peers === 0 ? true : undefined), 'the viewer gone');

    // Per address: the proxy's client, taken from the last X-Forwarded-For entry.
    const from = (ip: string) => ({ 'X-Forwarded-For': `203.0.113.9, ${ip}` });
    opened(await openSocket(p.url, from('10.0.0.1')));
    opened(await openSocket(p.url, from('10.0.0.1')));
    const third = refused(await openSocket(p.url, from('10.0.0.1')));
    expect(third).toMatchObject({ status: 429, code: 'too-many-connections' });
    expect(third.message).toMatch(/per address/);
    opened(await openSocket(p.url, from('10.0.0.2')));
    opened(await openSocket(p.url, from('10.0.0.3')));
    // Four open: the fifth is over --max-connections whatever its address.
    const fifth = refused(await openSocket(p.url, from('10.0.0.4')));
    expect(fifth).toMatchObject({ status: 429, code: 'too-many-connections' });
    expect(fifth.message).toMatch(/maximum of 4 connections/);
    // A slot comes back when a socket closes.
    const one = sockets.pop()!;
    await new Promise<void>((r) => (one.once('close', () => r()), one.close()));
    await waitFor(async () => {
      const u = await openSocket(p.url, from('10.0.0.5'));
      if (u.ok) sockets.push(u.ws);
      return u.ok || undefined;
    }, 'a slot given back');
  }, 60_000);

  it('without --trust-proxy, X-Forwarded-For is ignored: every socket counts against the real address', async () => {
    const p = await spawn(['--max-connections-per-ip', '2']);
    const v = await WsPeer.connect(p.url);
    sockets.push(v.ws);
    expect((await v.hello({ role: 'viewer' })).iceServers).toEqual([]);
    v.close();
    await v.closed;
    await waitFor(async () => ((await (await fetch(`${p.url}/api/health`)).json()).peers === 0 ? true : undefined), 'the viewer gone');
    opened(await openSocket(p.url, { 'X-Forwarded-For': '10.0.0.1' }));
    opened(await openSocket(p.url, { 'X-Forwarded-For': '10.0.0.2' }));
    const third = refused(await openSocket(p.url, { 'X-Forwarded-For': '10.0.0.3' }));
    expect(third).toMatchObject({ status: 429, code: 'too-many-connections' });
    expect(third.message).toMatch(/per address/);
  }, 60_000);
});

describe('export limits', () => {
  let s: TestServer | undefined;
  afterAll(async () => {
    await s?.destroy();
  });

  it('a build beyond --export-max-concurrent answers 503 busy with Retry-After; over --export-max-bytes 422 export-too-large', async () => {
    s = await startTestServer({ exportMaxConcurrent: 1, verifySampleRate: 0, verifyNewEncoderJobs: 0, cacheEnabled: true });
    const r = await upload(s.url, fs.readFileSync(await fixture('v-23976')));
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    const id = r.json.id as string;
    const renditions = r.json.renditions as string[];
    expect(renditions.length).toBe(2);
    // Real shards, checked and cached by the server.
    const e = await WsPeer.encoder(s.url, { capabilities: nativeCaps() });
    try {
      while (((await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string }).status !== 'ready') {
        const { job } = await e.next('job', () => true, 30_000);
        await completeJob(s.url, e, job);
      }
    } finally {
      e.close();
    }
    await waitFor(() => (s!.pool.snapshot().contents[0]!.renditions.every((x) => !x.cached.includes('0')) ? true : undefined), 'every shard cached');
    // Two different exports at once with room for one: one is built, the other told to come back.
    const exportOf = (rendition: string) => fetch(`${s!.url}/api/contents/${id}/export.mp4?rendition=${rendition}`);
    let busy: Response | undefined;
    for (let i = 0; i < 10 && !busy; i++) {
      const answers = await Promise.all(renditions.map(exportOf));
      expect(answers.some((a) => a.status === 200)).toBe(true);
      busy = answers.find((a) => a.status !== 200);
      for (const a of answers) if (a !== busy) await a.arrayBuffer();
    }
    expect(busy?.status).toBe(503);
    expect(busy!.headers.get('retry-after')).toBe('5');
    expect(((await busy!.json()) as { error: { code: string } }).error.code).toBe('busy');
    // One at a time, both are built, and each is a playable MP4 of the whole content.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'export-'));
    dirs.push(dir);
    for (const rendition of renditions) {
      const a = await exportOf(rendition);
      expect(a.status).toBe(200);
      const file = path.join(dir, `${rendition}.mp4`);
      fs.writeFileSync(file, new Uint8Array(await a.arrayBuffer()));
      const j = await ffprobeJson(file, ['-show_entries', 'format=duration']);
      expect(Number(j.format.duration)).toBeCloseTo(6, 0);
    }
    // The same cache with a byte limit below its size.
    s = await s.restart({ exportMaxBytes: 10_000 });
    const big = await exportOf(renditions[0]!);
    expect(big.status).toBe(422);
    const body = (await big.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('export-too-large');
    expect(body.error.message).toMatch(/above the 0\.0 MiB limit/);
  }, 120_000);
});
