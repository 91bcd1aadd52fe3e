/**
 * assembleMp4 on shards made the way encoder tabs make them (the same ffmpeg
 * command lines and audio cutter, run by native ffmpeg instead of
 * ffmpeg.wasm), for the cases one encoder tab never produces: shards from
 * different x264 presets, audio runs that meet, holes at the start and the
 * end, a shard of the wrong size. Native ffmpeg referees the output.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BufferSource, Input, MP4 } from 'mediabunny';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cutAudioRun } from '../../src/encoder/audioCutter.ts';
import { audioJobArgs, segmentName, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import { assembleMp4, ExportError, parseAvcC } from '../../src/shared/exportMp4.ts';
import type { Job } from '../../src/shared/protocol.ts';
import { AAC_PACKET_SAMPLES, buildShardMap, isAudioRendition, isVideoRendition, type Rendition, type ShardMap } from '../../src/shared/shardMap.ts';
import { probeFile } from '../../signaling/media/probe.ts';
import { AUDIO_RUN_OVERLAP } from '../../signaling/PoolManager.ts';
import { countFrames, ffprobeJson, fixture } from '../harness/fixtures.ts';
import { decodeErrors, silences } from '../harness/referee.ts';

const run = promisify(execFile);
const LADDER: Rendition[] = [
  { id: 'hq', video: { codec: 'h264', width: 320, height: 180, bitrate: 1_500_000 } },
  { id: 'lo', video: { codec: 'h264', width: 160, height: 90, bitrate: 200_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
];

let dir: string;
let source: string;
let map: ShardMap;
const files = new Map<string, Uint8Array>();
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

function jobOf(rendition: string, indices: number[], extra: Partial<Job> = {}): Job {
  const r = map.renditions.find((x) => x.id === rendition)!;
  const shards = indices.map((i) => {
    const s = map.shards[i]!;
    const st = s.renditions[rendition]!;
    return isAudioRendition(r)
      ? { index: i, start: st.start!, duration: st.samples! / r.audio.sampleRate, frames: s.frames, firstFrame: s.firstFrame, samples: st.samples! }
      : { index: i, start: s.start, duration: s.duration, frames: s.frames, firstFrame: s.firstFrame };
  });
  return {
    id: 'j',
    contentId: map.contentId,
    rendition,
    kind: isVideoRendition(r) ? 'video' : 'audio',
    ...(isVideoRendition(r) ? { video: r.video } : { audio: r.audio }),
    shards,
    sourceUrl: '',
    start: shards[0]!.start,
    end: 0,
    deadline: 0,
    upload: false,
    ...extra,
  };
}

async function encodeVideo(rendition: string, indices: number[], preset: string): Promise<void> {
  const out = fs.mkdtempSync(path.join(dir, 'v-'));
  await run('ffmpeg', ['-v', 'error', ...videoJobArgs(jobOf(rendition, indices), 0, source, { preset }, path.join(out, 'shard_%04d.mp4'))]);
  indices.forEach((i, k) => {
    files.set(`${rendition}/${i}`, new Uint8Array(fs.readFileSync(path.join(out, segmentName(k)))));
  });
}

/** One audio run, with the lead and tail packets the pool asks for where runs meet. */
async function encodeAudioRun(indices: number[]): Promise<void> {
  const margin = Math.ceil(AUDIO_RUN_OVERLAP / (AAC_PACKET_SAMPLES / 48000));
  const leadPackets = indices[0] === 0 ? 0 : margin;
  const tailPackets = indices.at(-1) === map.shards.length - 1 ? 0 : margin;
  const job = jobOf('audio', indices, { leadPackets, tailPackets });
  const out = path.join(dir, `run-${indices[0]}.mp4`);
  await run('ffmpeg', ['-v', 'error', ...audioJobArgs(job, 0, source, out)]);
  const cut = await cutAudioRun(new Uint8Array(fs.readFileSync(out)), {
    shards: job.shards.map((s) => ({ index: s.index, packets: s.samples! / AAC_PACKET_SAMPLES })),
    leadPackets,
    tailPackets,
  });
  for (const c of cut) {
    files.set(`audio/${c.index}`, c.bytes);
    Object.assign(map.shards[c.index]!.renditions.audio!, { status: 'ready', lead: c.lead, tail: c.tail });
  }
}

async function exportWith(name: string, get: (key: string) => Uint8Array | undefined, videoRendition?: string) {
  const r = await assembleMp4(map, async (rendition, index) => get(`${rendition}/${index}`), videoRendition ? { videoRendition } : {});
  const file = path.join(dir, name);
  fs.writeFileSync(file, r.bytes);
  return { file, report: r.report };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-export-'));
  source = await fixture('av-2997');
  map = buildShardMap({ contentId: 'x', facts: await probeFile(source), renditions: LADDER });
  const n = map.shards.length;
  // Three jobs, the middle one by a tab with another preset: other SPS/PPS.
  await encodeVideo('hq', range(0, 10), 'veryfast');
  await encodeVideo('hq', range(10, 20), 'slow');
  await encodeVideo('hq', range(20, n), 'veryfast');
  await encodeVideo('lo', range(0, n), 'veryfast');
  // Two audio runs that meet at shard 17.
  await encodeAudioRun(range(0, 17));
  await encodeAudioRun(range(17, n));
}, 120_000);

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('assembleMp4', () => {
  it('mixes presets: shards with other parameter sets carry them in-band and decode cleanly', async () => {
    // The test is only meaningful if the presets really wrote different configurations.
    const desc = async (key: string) => {
      const input = new Input({ source: new BufferSource(files.get(key)!), formats: [MP4] });
      const cfg = await (await input.getPrimaryVideoTrack())!.getDecoderConfig();
      input.dispose();
      return [...parseAvcC(new Uint8Array(cfg!.description as ArrayBuffer))!.nals.flatMap((x) => [...x])].join(',');
    };
    expect(await desc('hq/12')).not.toBe(await desc('hq/2'));
    expect(await desc('hq/22')).toBe(await desc('hq/2'));

    const { file, report } = await exportWith('mixed.mp4', (k) => files.get(k));
    expect(report).toMatchObject({ rendition: 'hq', videoShards: map.shards.length, held: 0, audioShards: map.shards.length, silent: 0, notes: [] });
    expect(await decodeErrors(file)).toBe('');
    expect(await countFrames(file)).toBe(await countFrames(source));
    const { stderr } = await run(
      'ffmpeg',
      ['-v', 'info', '-i', file, '-i', source, '-lavfi', '[0:v]setpts=N/TB/30[x];[1:v]setpts=N/TB/30[y];[x][y]psnr', '-f', 'null', '-'],
      {
        maxBuffer: 16 * 2 ** 20,
      },
    );
    expect(Number(/PSNR .*average:([\d.]+)/.exec(stderr)?.[1])).toBeGreaterThan(35);
    expect(await silences(file, 10)).toEqual([]);
  });

  it('conceals holes at the start, in the middle and at the end, and a shard of the wrong size', async () => {
    const n = map.shards.length;
    const gone = new Set(['hq/0', 'hq/1', 'hq/15', `hq/${n - 1}`, 'audio/0', 'audio/25']);
    const { file, report } = await exportWith('holes.mp4', (k) => (k === 'hq/8' ? files.get('lo/8') : gone.has(k) ? undefined : files.get(k)));
    expect(report).toMatchObject({ videoShards: n - 5, held: 5, audioShards: n - 2, silent: 2 });
    expect(report.notes.join('\n')).toMatch(/hq\/8: avc 160x90 differs from the file's avc 320x180/);
    expect(await decodeErrors(file)).toBe('');

    const j = await ffprobeJson(file, [
      '-show_entries',
      'stream=codec_type,start_time,duration',
      '-show_entries',
      'packet=pts_time,duration_time',
      '-select_streams',
      'v:0',
    ]);
    const end = map.shards[n - 1]!.start + map.shards[n - 1]!.duration;
    const packets = (j.packets as { pts_time: string; duration_time: string }[]).map((p) => ({ t: Number(p.pts_time), d: Number(p.duration_time) }));
    // The first present shard's key frame covers the missing start; the last frame lasts to the end.
    expect(packets[0]!.t).toBeCloseTo(0, 6);
    expect(packets[0]!.d).toBeCloseTo(map.shards[2]!.start, 3);
    expect(packets.at(-1)!.t + packets.at(-1)!.d).toBeCloseTo(end, 3);
    expect(await countFrames(file)).toBe(map.shards.reduce((a, s, i) => a + ([0, 1, 8, 15, n - 1].includes(i) ? 0 : s.frames), 1));

    const found = await silences(file, 10);
    const a0 = map.shards[0]!.renditions.audio!;
    const a25 = map.shards[25]!.renditions.audio!;
    const frame = AAC_PACKET_SAMPLES / 48000;
    expect(found).toHaveLength(2);
    expect(found[0]![0]).toBeCloseTo(0, 3);
    expect(found[0]![1]).toBeGreaterThan(a0.samples! / 48000 - frame);
    expect(found[1]![0]).toBeGreaterThan(a25.start! - 1e-3);
    // The decoder fades in over the first frame after the hole: the silence may end up to a frame late.
    expect(found[1]![1]).toBeLessThan(a25.start! + a25.samples! / 48000 + frame);
  });

  it('refuses an unknown rendition, and a content with nothing to read', async () => {
    await expect(assembleMp4(map, async () => undefined, { videoRendition: 'audio' })).rejects.toThrow(/not a video rendition.*hq, lo/);
    const err = await assembleMp4(map, async () => undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExportError);
    expect((err as ExportError).code).toBe('nothing-to-export');
  });

  it('passes on a getter that fails, with nothing left unhandled', async () => {
    const failing = assembleMp4(map, async (r, i) => {
      if (i >= 10) throw new Error(`disk gone at ${r}/${i}`);
      return files.get(`${r}/${i}`);
    });
    await expect(failing).rejects.toThrow(/disk gone at hq\/10/);
  });

  it('reports progress for every shard read', async () => {
    const seen: [number, number][] = [];
    await assembleMp4(map, async (r, i) => files.get(`${r}/${i}`), { onProgress: (d, t) => seen.push([d, t]) });
    expect(seen).toHaveLength(2 * map.shards.length);
    expect(seen.at(-1)).toEqual([2 * map.shards.length, 2 * map.shards.length]);
  });
});
