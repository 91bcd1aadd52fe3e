/** The viewer's controllers on their own: the ABR's order and the append queue's map order and concealment. */
import { describe, expect, it } from 'vitest';
import type { ProbeFacts } from '../../src/shared/media.ts';
import { buildShardMap, isVideoRendition, type Rendition, type VideoRendition } from '../../src/shared/shardMap.ts';
import { nextThroughput, videoOrder } from '../../src/viewer/abr.ts';
import { AppendQueue } from '../../src/viewer/AppendQueue.ts';
import { silenceFragment } from '../../src/viewer/conceal.ts';
import type { Placement, Reconstructor, Track } from '../../src/viewer/Reconstructor.ts';
import type { CellState } from '../../src/viewer/Viewer.ts';

const ladder: VideoRendition[] = [
  { id: '720p', video: { codec: 'h264', width: 1280, height: 720, bitrate: 2_000_000 } },
  { id: '360p', video: { codec: 'h264', width: 640, height: 360, bitrate: 800_000 } },
  { id: '180p', video: { codec: 'h264', width: 320, height: 180, bitrate: 200_000 } },
];

describe('ABR', () => {
  it('starts at the highest rung the throughput affords and falls back only downwards', () => {
    expect(videoOrder(ladder, 1_500_000, 0.8, () => true)).toEqual(['360p', '180p']);
    expect(videoOrder(ladder, 10_000_000, 0.8, () => true)).toEqual(['720p', '360p', '180p']);
    expect(videoOrder(ladder, 1000, 0.8, () => true)).toEqual(['180p']);
  });

  it('puts held renditions before unheld ones', () => {
    expect(videoOrder(ladder, 10_000_000, 0.8, (id) => id === '180p')).toEqual(['180p', '720p', '360p']);
  });

  it('averages per-transfer rates, the newest weighing 0.3', () => {
    expect(nextThroughput(0, 1000, 1000)).toBe(8000);
    expect(nextThroughput(8000, 2000, 1000)).toBeCloseTo(0.7 * 8000 + 0.3 * 16000);
    expect(nextThroughput(0, 1000, 0)).toBe(8_000_000); // a 0 ms transfer counts as 1 ms
  });
});

/** An audio-only map whose audio rendition is not called `audio`. */
function audioOnlyMap(seconds: number) {
  const facts: ProbeFacts = {
    container: 'mp4',
    mimeType: 'audio/mp4',
    duration: seconds,
    timeOrigin: 0,
    size: 1,
    audio: { codec: 'aac', sampleRate: 48000, channels: 2, start: 0, duration: seconds },
  };
  const renditions: Rendition[] = [{ id: 'sound', audio: { codec: 'aac', bitrate: 128000, sampleRate: 48000, channels: 2 } }];
  return buildShardMap({ contentId: 'c', facts, renditions });
}

/** Records what the queue does to the MediaSource. */
function fakeRecon() {
  const log: string[] = [];
  let codecs: Partial<Record<Track, string>> | undefined;
  const recon = {
    codecSwitches: 0,
    get initialised() {
      return Object.keys(codecs ?? {}).length > 0;
    },
    async init(c: Partial<Record<Track, string>>) {
      codecs = c;
      log.push(`init ${JSON.stringify(c)}`);
    },
    has: (t: Track) => !!codecs?.[t],
    async append(track: Track, codec: string, _bytes: Uint8Array, at: Placement) {
      log.push(`append ${track} ${codec} ${at.start.toFixed(3)}`);
    },
    skip(track: Track, at: Placement) {
      log.push(`skip ${track} ${at.start.toFixed(3)}`);
    },
    async end() {
      log.push('end');
    },
  };
  return { recon: recon as unknown as Reconstructor, log };
}

describe('AppendQueue', () => {
  it('appends in map order, covers a skipped audio shard with silence, and ends', async () => {
    const map = audioOnlyMap(1);
    expect(map.renditions.some(isVideoRendition)).toBe(false);
    const n = map.shards.length;
    expect(n).toBeGreaterThanOrEqual(3);
    const cells = {
      video: map.shards.map((): CellState => ({ status: 'skipped', failures: [] })),
      audio: map.shards.map((): CellState => ({ status: 'pending', failures: [] })),
    };
    const { recon, log } = fakeRecon();
    const q = new AppendQueue(map, recon, cells, 1 << 20);
    const events: string[] = [];
    q.on('ended', ({ playable }) => events.push(`ended ${playable}`));
    q.on('error', ({ message }) => events.push(`error ${message}`));
    const bytes = await silenceFragment(48000, 2, 1024);
    const ready = (i: number) => {
      cells.audio[i]!.status = 'ready';
      q.put('audio', i, { bytes, rendition: 'sound', source: 'cache', transferMs: 1 });
    };

    // Shard 1 arrives first: nothing moves until shard 0 is in.
    ready(1);
    await q.appendReady();
    expect(log[0]).toBe('init {"audio":"mp4a.40.2"}');
    expect(log.filter((l) => l.includes('audio') && !l.startsWith('init'))).toEqual([]);
    expect(log.filter((l) => l.startsWith('skip video'))).toHaveLength(n); // the video track moves on by itself
    expect(q.next.audio).toBe(0);

    ready(0);
    cells.audio[2]!.status = 'skipped';
    for (let i = 3; i < n; i++) ready(i);
    await q.appendReady();
    const st = (i: number) => map.shards[i]!.renditions.sound!.start!.toFixed(3);
    const audio = log.filter((l) => l.startsWith('append audio'));
    expect(audio.slice(0, 3)).toEqual([`append audio mp4a.40.2 ${st(0)}`, `append audio mp4a.40.2 ${st(1)}`, `append audio mp4a.40.2 ${st(2)}`]);
    expect(cells.audio[2]!.concealed).toBe('silence');
    expect(cells.audio.every((c) => c.status === 'appended' || c.concealed)).toBe(true);
    expect(log.at(-1)).toBe('end');
    expect(events).toEqual(['ended true']);
    expect(q.kept('sound', 0)).toBe(bytes);
  });

  it('reports an unplayable end when no shard of any track could be had', async () => {
    const map = audioOnlyMap(0.5);
    const cells = {
      video: map.shards.map((): CellState => ({ status: 'skipped', failures: [] })),
      audio: map.shards.map((): CellState => ({ status: 'skipped', failures: [] })),
    };
    const { recon } = fakeRecon();
    const q = new AppendQueue(map, recon, cells, 0);
    const events: boolean[] = [];
    q.on('ended', ({ playable }) => events.push(playable));
    await q.appendReady();
    expect(events).toEqual([false]);
  });
});
