/**
 * A source with a track only volunteers decode (Ogg Theora/Vorbis) waits
 * `normalizing` for a mezzanine: two different volunteers with one engine
 * build must upload the same bytes; disagreeing ones do not publish; claims and
 * uploads without proof are refused; the state survives a restart. A real
 * server over real HTTP and WebSockets; the mezzanines are real MP4s made by
 * native ffmpeg (as the volunteers' ffmpeg.wasm would).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const run = promisify(execFile);
const ENGINE = 'ffmpeg-wasm@0.12.10';
const MAX = 400_000;

let server: TestServer;
let dir: string;
const peers: WsPeer[] = [];

async function ffmpeg(...args: string[]): Promise<Buffer> {
  const out = path.join(dir, `f${Math.random().toString(36).slice(2)}.${args.pop()}`);
  await run('ffmpeg', ['-v', 'error', '-y', ...args, out]);
  return fs.readFileSync(out);
}

/** A tab with ffmpeg.wasm that joined the pool; `resume` proves its id over HTTP. */
async function volunteer(engine = 'ffmpeg-wasm'): Promise<{ peer: WsPeer; id: string; resume: string }> {
  const peer = await WsPeer.connect(server.url);
  const w = await peer.hello({ role: 'encoder', capabilities: { engines: [{ name: engine, codecs: ['h264', 'aac'] }], maxJobs: 1 } });
  peers.push(peer);
  return { peer, id: w.peerId, resume: w.resume };
}

async function claim(v: { id: string; resume: string }): Promise<{ status: number; json: any }> {
  const res = await fetch(`${server.url}/api/mezzanine/claim`, { method: 'POST', body: JSON.stringify({ peerId: v.id, resume: v.resume }) });
  return { status: res.status, json: res.status === 204 ? undefined : await res.json() };
}

async function put(url: string, body: Uint8Array, engine = ENGINE): Promise<{ status: number; json: any }> {
  const res = await fetch(`${server.url}${url}`, { method: 'PUT', body: body as unknown as BodyInit, headers: { 'X-Engine': engine } });
  return { status: res.status, json: await res.json() };
}

async function listed(id: string): Promise<any> {
  const { contents } = (await (await fetch(`${server.url}/api/contents`)).json()) as { contents: any[] };
  return contents.find((c) => c.id === id);
}

let ogg: Buffer;
let good: Buffer;
let other: Buffer;
let audioOnly: Buffer;

beforeAll(async () => {
  server = await startTestServer({ mezzanineMaxBytes: MAX });
  dir = fs.mkdtempSync(path.join(server.dataDir, 'mezz-'));
  const src = ['-f', 'lavfi', '-i', 'testsrc2=size=160x96:rate=24:duration=1', '-f', 'lavfi', '-i', 'sine=frequency=500:sample_rate=48000:duration=1'];
  ogg = await ffmpeg(...src, '-c:v', 'libtheora', '-c:a', 'libvorbis', '-ac', '2', 'ogg');
  const oggFile = path.join(dir, 'src.ogg');
  fs.writeFileSync(oggFile, ogg);
  const mezz = (crf: string) => ['-i', oggFile, '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', crf, '-pix_fmt', 'yuv420p', '-c:a', 'aac', 'mp4'];
  good = await ffmpeg(...mezz('18'));
  other = await ffmpeg(...mezz('30'));
  audioOnly = await ffmpeg('-i', oggFile, '-vn', '-c:a', 'aac', 'mp4');
});
afterAll(async () => {
  for (const p of peers) p.ws.close();
  await server?.destroy();
});

describe('mezzanine of a source only volunteers decode', () => {
  let id: string;

  it('accepts Ogg Theora/Vorbis as normalizing, with a reason, instead of 415', async () => {
    const r = await upload(server.url, ogg, '', 'clip.ogv');
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    expect(r.json.status).toBe('normalizing');
    id = r.json.id;
    const c = await listed(id);
    expect(c.status).toBe('normalizing');
    expect(c.reason).toMatch(/theora/);
  });

  it('refuses claims and uploads without proof, and oversized uploads', async () => {
    const v = await volunteer();
    expect((await claim({ id: v.id, resume: 'wrong' })).status).toBe(404);
    expect((await claim(await volunteer('webcodecs'))).json.error.code).toBe('not-an-encoder');
    expect((await put(`/api/mezzanine/${id}`, good)).status).toBe(401);
    expect((await put(`/api/mezzanine/${id}?job=forged`, good)).status).toBe(403);
    const job = (await claim(v)).json;
    expect((await fetch(`${server.url}${job.source}`).then((r) => r.arrayBuffer())).byteLength).toBe(ogg.byteLength);
    expect((await put(job.upload, new Uint8Array(MAX + 1))).status).toBe(413);
    expect((await listed(id)).status).toBe('normalizing');
  });

  it('does not publish from one volunteer, nor from two that disagree, nor from one that drops a track', async () => {
    for (const body of [good, other, audioOnly]) {
      const job = (await claim(await volunteer())).json;
      const r = await put(job.upload, body);
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.status).toBe('normalizing');
    }
    // Two volunteers agreeing on a mezzanine that lacks the video track: refused by the census check.
    const job = (await claim(await volunteer())).json;
    const r = await put(job.upload, audioOnly);
    expect(r.json.status).toBe('normalizing');
    expect(r.json.reason).toMatch(/video track/);
    expect((await listed(id)).status).toBe('normalizing');
  });

  it('publishes when a second volunteer agrees, after a restart, and the content encodes from the mezzanine', async () => {
    server = await server.restart();
    expect((await listed(id)).status).toBe('normalizing');
    const job = (await claim(await volunteer())).json;
    expect(job.contentId).toBe(id);
    const r = await put(job.upload, good);
    expect(r.json.status, JSON.stringify(r.json)).toBe('published');
    const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    expect(c.status).toBe('encoding');
    expect(c.shardMap.source.video?.codec).toBe('avc');
    expect(c.shardMap.source.audio?.codec).toBe('aac');
    expect((await claim(await volunteer())).status).toBe(204);
  });
});
