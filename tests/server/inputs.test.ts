/**
 * The README's "Accepted files" tables are the truth: for every container row,
 * a file of each listed video codec and of each listed audio codec (made by
 * native ffmpeg, 0.5 s at 160x96) is published with both tracks in its map;
 * every refused track gets 415 naming its codec and leaves nothing behind. A
 * real server over real HTTP; the probe is the product's.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

const run = promisify(execFile);
const README = fs.readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');

/** The rows of the first table after `header` (a line starting with it) in the "Accepted files" section. */
function table(header: string): string[][] {
  const section = README.slice(README.indexOf('### Accepted files'));
  const lines = section.slice(section.indexOf(header)).split('\n');
  const rows: string[][] = [];
  for (const l of lines.slice(2)) {
    if (!l.startsWith('|')) break;
    rows.push(
      l
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim()),
    );
  }
  return rows;
}
const list = (cell: string) => cell.split(',').map((x) => x.trim());

/** ffmpeg muxer and file extension per container name as the README spells it. */
const CONTAINER: Record<string, { format: string; ext: string }> = {
  MP4: { format: 'mp4', ext: 'mp4' },
  MOV: { format: 'mov', ext: 'mov' },
  WebM: { format: 'webm', ext: 'webm' },
  Matroska: { format: 'matroska', ext: 'mkv' },
  'MPEG-TS': { format: 'mpegts', ext: 'ts' },
  Ogg: { format: 'ogg', ext: 'ogg' },
};
/** ffmpeg encoder arguments and the codec name the map's source carries, per codec name as the README spells it. */
const VIDEO: Record<string, { args: string[]; mapped?: string }> = {
  'H.264': { args: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'], mapped: 'avc' },
  HEVC: { args: ['-c:v', 'libx265', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-x265-params', 'log-level=error'], mapped: 'hevc' },
  VP8: { args: ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8'], mapped: 'vp8' },
  VP9: { args: ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8'], mapped: 'vp9' },
  AV1: { args: ['-c:v', 'libaom-av1', '-cpu-used', '8', '-usage', 'realtime', '-b:v', '100k'], mapped: 'av1' },
  Theora: { args: ['-c:v', 'libtheora'] },
  'MPEG-2 video': { args: ['-c:v', 'mpeg2video'] },
  'MPEG-4 Part 2': { args: ['-c:v', 'mpeg4'] },
};
const AUDIO: Record<string, { args: string[]; mapped: string }> = {
  AAC: { args: ['-c:a', 'aac'], mapped: 'aac' },
  MP3: { args: ['-c:a', 'libmp3lame'], mapped: 'mp3' },
  Opus: { args: ['-c:a', 'libopus'], mapped: 'opus' },
  Vorbis: { args: ['-c:a', 'libvorbis'], mapped: 'vorbis' },
  FLAC: { args: ['-c:a', 'flac', '-strict', '-2'], mapped: 'flac' },
  'AC-3': { args: ['-c:a', 'ac3'], mapped: 'ac3' },
  PCM: { args: ['-c:a', 'pcm_s16le'], mapped: 'pcm-s16' },
};

interface Sample {
  container: string;
  video?: string;
  audio?: string;
}

/** One file per listed codec of each container, each with the row's first codec of the other kind. */
const ACCEPTED: Sample[] = table('| container |').flatMap(([containers, videos, audios]) => {
  const vs = videos!.startsWith('none') ? [] : list(videos!);
  const as = list(audios!);
  return list(containers!).flatMap((c) => [
    ...vs.map((v) => ({ container: c, video: v, audio: as[0] })),
    ...as.slice(vs.length ? 1 : 0).map((a) => ({ container: c, ...(vs[0] && { video: vs[0] }), audio: a })),
  ]);
});
/** The first accepted codecs of each container, to go beside a refused track. */
const FIRST = new Map(
  table('| container |').flatMap(([cs, v, a]) => list(cs!).map((c) => [c, { video: v!.startsWith('none') ? undefined : list(v!)[0], audio: list(a!)[0] }])),
);
/** Each row's track (a table of "| track | in |") beside the container's first accepted codec of the other kind. */
const beside = (header: string): Sample[] =>
  table(header).flatMap(([codec, containers]) =>
    list(containers!).map((c) =>
      codec! in AUDIO
        ? { container: c, ...(FIRST.get(c)?.video && { video: FIRST.get(c)!.video }), audio: codec! }
        : { container: c, video: codec!, audio: FIRST.get(c)?.audio },
    ),
  );
const REFUSED = beside('| refused track |');

/** Tracks only volunteers decode: published `normalizing`. */
const NORMALISED = beside('| normalised track |');

let server: TestServer;
let dir: string;

async function make(s: Sample): Promise<string> {
  const c = CONTAINER[s.container];
  if (!c) throw new Error(`README names a container this test does not know: ${s.container}`);
  const out = path.join(dir, `${[s.container, s.video, s.audio].join('-').replace(/[^\w-]/g, '_')}.${c.ext}`);
  const v = s.video ? VIDEO[s.video] : undefined;
  const a = s.audio ? AUDIO[s.audio] : undefined;
  if (s.video && !v) throw new Error(`README names a video codec this test does not know: ${s.video}`);
  if (s.audio && !a) throw new Error(`README names an audio codec this test does not know: ${s.audio}`);
  const audioOpus = s.audio === 'Opus' || s.audio === 'Vorbis' ? ['-ar', '48000'] : [];
  await run('ffmpeg', [
    '-v',
    'error',
    '-y',
    ...(v ? ['-f', 'lavfi', '-i', 'testsrc2=size=160x96:rate=24:duration=0.5'] : []),
    ...(a ? ['-f', 'lavfi', '-i', 'sine=frequency=500:sample_rate=48000:duration=0.5'] : []),
    ...(v?.args ?? []),
    ...(a ? [...a.args, '-ac', '2', ...audioOpus] : []),
    ...(s.video === 'HEVC' && (c.format === 'mp4' || c.format === 'mov') ? ['-tag:v', 'hvc1'] : []),
    '-f',
    c.format,
    out,
  ]);
  return out;
}

beforeAll(async () => {
  server = await startTestServer({});
  dir = fs.mkdtempSync(path.join(server.dataDir, 'accepted-'));
});
afterAll(async () => {
  await server?.destroy();
});

const label = (s: Sample) => `${s.container}: ${[s.video, s.audio].filter(Boolean).join(' + ')}`;

describe('README "Accepted files"', () => {
  it('lists containers and codecs this test can make', () => {
    expect(ACCEPTED.length).toBeGreaterThan(20);
    expect(REFUSED.length).toBeGreaterThanOrEqual(4);
    expect(NORMALISED.length).toBeGreaterThanOrEqual(3);
  });

  it.each(ACCEPTED.map((s) => [label(s), s] as const))('publishes %s with every track in its map', async (_l, s) => {
    const file = await make(s);
    const r = await upload(server.url, fs.readFileSync(file), '', path.basename(file));
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    const { shardMap } = (await (await fetch(`${server.url}/api/contents/${r.json.id}`)).json()) as { shardMap: ShardMap };
    expect(shardMap.source.video?.codec).toBe(s.video ? VIDEO[s.video]!.mapped : undefined);
    expect(shardMap.source.audio?.codec).toBe(AUDIO[s.audio!]!.mapped);
  });

  it.each(NORMALISED.map((s) => [label(s), s] as const))('accepts %s as normalizing, naming the track volunteers decode', async (_l, s) => {
    const file = await make(s);
    const r = await upload(server.url, fs.readFileSync(file), '', path.basename(file));
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    const { contents } = (await (await fetch(`${server.url}/api/contents`)).json()) as { contents: { id: string; status: string; reason: string }[] };
    const c = contents.find((x) => x.id === r.json.id);
    expect(c?.status).toBe('normalizing');
    const codec = { Theora: /theora/, 'MPEG-2 video': /mpeg2video/, FLAC: /flac/ }[
      s.video && !(s.video === FIRST.get(s.container)?.video) ? s.video : s.audio!
    ];
    expect(c?.reason).toMatch(codec!);
  });

  it.each(REFUSED.map((s) => [label(s), s] as const))('refuses %s with 415 naming the track and its codec, and keeps nothing', async (_l, s) => {
    const before = ((await (await fetch(`${server.url}/api/contents`)).json()) as { contents: unknown[] }).contents.length;
    const file = await make(s);
    const r = await upload(server.url, fs.readFileSync(file), '', path.basename(file));
    expect(r.status, JSON.stringify(r.json)).toBe(415);
    const refused = s.audio && !(s.audio === FIRST.get(s.container)?.audio) ? s.audio : s.video!;
    const word = { Theora: /theora/i, 'MPEG-2 video': /mpeg2video/i, 'MPEG-4 Part 2': /mp4v|V_MPEG4/i, FLAC: /flac/i, MP3: /mp3/i }[refused]!;
    expect(JSON.stringify(r.json)).toMatch(refused === s.audio ? /audio/ : /video/);
    expect(JSON.stringify(r.json)).toMatch(word);
    expect(((await (await fetch(`${server.url}/api/contents`)).json()) as { contents: unknown[] }).contents.length).toBe(before);
  });
});
