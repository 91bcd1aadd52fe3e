import { describe, expect, it } from 'vitest';
import { hlsRelative } from '../../src/shared/api.ts';
import { groupShards, initSource, listedSegments, planHls } from '../../src/shared/hls/plan.ts';
import { masterPlaylist, mediaPlaylist, targetDuration } from '../../src/shared/hls/playlist.ts';
import { buildShardMap, type Rendition, type ShardMap } from '../../src/shared/shardMap.ts';
import { checkGrowth, checkMasterPlaylist, checkMediaPlaylist } from '../harness/playlistRules.ts';
import { avFacts } from './facts.ts';

const LADDER: Rendition[] = [
  { id: 'hi', video: { codec: 'h264', width: 320, height: 180, bitrate: 500_000 } },
  { id: 'lo', video: { codec: 'h264', width: 160, height: 90, bitrate: 150_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 96_000, sampleRate: 48000, channels: 2 } },
];

function mapOf(seconds: number, renditions = LADDER): ShardMap {
  const fps = 30000 / 1001;
  return buildShardMap({ contentId: 'c', facts: avFacts(seconds, { fps, frames: Math.floor(seconds * fps) }), renditions });
}

const ready = (map: ShardMap, upTo = map.shards.length) => {
  for (const s of map.shards.slice(0, upTo)) for (const st of Object.values(s.renditions)) Object.assign(st, { status: 'ready', size: 5000 });
};

describe('the segment plan', () => {
  it('groups consecutive shards into segments of about 2 s that cover every shard once', () => {
    const map = mapOf(10);
    const plan = planHls(map);
    expect(plan.renditions.map((r) => [r.id, r.kind])).toEqual([
      ['hi', 'video'],
      ['lo', 'video'],
      ['audio', 'audio'],
    ]);
    for (const r of plan.renditions) {
      expect(r.segments.flatMap((s) => s.shards)).toEqual(map.shards.map((s) => s.index));
      expect(r.segments.map((s) => s.seq)).toEqual(r.segments.map((_, i) => i));
      for (const s of r.segments.slice(0, -1)) expect(Math.abs(s.duration - 2)).toBeLessThanOrEqual(map.shardDuration / 2 + 1e-9);
    }
    // 0.3 s shards: seven make 2.1 s, nearer to 2 than six (1.8 s).
    expect(plan.renditions[0]!.segments[0]!.shards).toHaveLength(7);
  });

  it('places video segments at the shards’ frame times and audio segments at their exact sample times, end to end', () => {
    const map = mapOf(10);
    const [hi, , audio] = planHls(map).renditions;
    hi!.segments.forEach((s, i) => {
      expect(s.start).toBe(map.shards[s.shards[0]!]!.start);
      if (i > 0) expect(s.start).toBeCloseTo(hi!.segments[i - 1]!.start + hi!.segments[i - 1]!.duration, 9);
    });
    audio!.segments.forEach((s, i) => {
      const first = map.shards[s.shards[0]!]!.renditions.audio!;
      expect(s.start).toBe(first.start);
      const samples = s.shards.reduce((n, k) => n + map.shards[k]!.renditions.audio!.samples!, 0);
      expect(s.duration).toBe(samples / 48000);
      if (i > 0) expect(s.start).toBeCloseTo(audio!.segments[i - 1]!.start + audio!.segments[i - 1]!.duration, 9);
    });
  });

  it('starts a new init segment (and segment) only where a rendition’s codec configuration changes', () => {
    const map = mapOf(10);
    // Shards 9 and 10 of "hi" are encoded at another size; a bitrate override changes nothing an init segment says.
    map.shards[9]!.overrides = { hi: { width: 240, height: 136 } };
    map.shards[10]!.overrides = { hi: { width: 240, height: 136 } };
    map.shards[20]!.overrides = { hi: { bitrate: 900_000 } };
    const [hi, lo] = planHls(map).renditions;
    expect(hi!.inits).toBe(3);
    expect(lo!.inits).toBe(1);
    const initOf = (i: number) => hi!.segments.find((s) => s.shards.includes(i))!.init;
    expect([initOf(8), initOf(9), initOf(10), initOf(11), initOf(20), initOf(30)]).toEqual([0, 1, 1, 2, 2, 2]);
    // The split segments stay whole shards: 7..8 | 9..10 | 11..13.
    expect(hi!.segments.map((s) => s.shards[0])).toContain(9);
    expect(hi!.segments.map((s) => s.shards[0])).toContain(11);
    expect(initSource(hi!, 1)!.shards[0]).toBe(9);
    const text = mediaPlaylist(hi!, { listed: hi!.segments.length, ended: true });
    const facts = checkMediaPlaylist(text);
    expect(facts.segments.filter((s) => s.discontinuity).map((s) => s.uri)).toEqual(
      hi!.segments.filter((s, i) => i > 0 && s.init !== hi!.segments[i - 1]!.init).map((s) => hlsRelative.segment(s.seq)),
    );
    expect(new Set(facts.segments.map((s) => s.map))).toEqual(new Set(['init-0.mp4', 'init-1.mp4', 'init-2.mp4']));
  });

  it('keeps a short last run whole', () => {
    const map = mapOf(2.5);
    const runs = groupShards(map.shards);
    expect(runs.flat().length).toBe(map.shards.length);
    expect(runs.length).toBe(2);
  });
});

describe('the playlists', () => {
  it('list only the complete prefix while encoding, grow by appending, and end with EXT-X-ENDLIST', () => {
    const map = mapOf(10);
    const plan = planHls(map);
    const hi = plan.renditions[0]!;
    const cached = new Set<number>();
    const available = (_r: string, i: number) => cached.has(i);
    const readings: string[] = [];
    const read = () => {
      const n = listedSegments(map, hi, available);
      const text = mediaPlaylist(hi, { listed: n, ended: n === hi.segments.length });
      readings.push(text);
      return checkMediaPlaylist(text);
    };
    expect(read().segments).toHaveLength(0);
    ready(map, 12);
    for (let i = 0; i < 12; i++) cached.add(i);
    // Shards 0..11 ready: segment 0 (0..6) is complete, segment 1 (7..13) is not.
    expect(read().segments.map((s) => s.uri)).toEqual(['seg-0.m4s']);
    // A later segment complete before an earlier one is not listed.
    ready(map, map.shards.length);
    for (let i = 14; i < map.shards.length; i++) cached.add(i);
    const partial = read();
    expect(partial.segments).toHaveLength(1);
    expect(partial.ended).toBe(false);
    expect(partial.type).toBe('EVENT');
    cached.add(12);
    cached.add(13);
    const done = read();
    expect(done.segments).toHaveLength(hi.segments.length);
    expect(done.ended).toBe(true);
    expect(done.targetDuration).toBe(targetDuration(hi));
    for (let i = 1; i < readings.length; i++) checkGrowth(readings[i - 1]!, readings[i]!);
  });

  it('the validator catches what it is there for', () => {
    const map = mapOf(10);
    const hi = planHls(map).renditions[0]!;
    const good = mediaPlaylist(hi, { listed: hi.segments.length, ended: true });
    expect(() => checkMediaPlaylist(good.replace('#EXT-X-TARGETDURATION:2', '#EXT-X-TARGETDURATION:1'))).toThrow(/target duration/i);
    expect(() => checkMediaPlaylist(good.replace(/#EXT-X-MAP:[^\n]*\n/, ''))).toThrow(/EXT-X-MAP/);
    const shorter = mediaPlaylist(hi, { listed: 3, ended: false });
    expect(() => checkGrowth(good, shorter)).toThrow(/6.2.1/);
    expect(() => checkGrowth(shorter.replace('seg-1.m4s', 'seg-9.m4s'), good)).toThrow(/6.2.1/);
  });

  it('the master names each video rendition with CODECS, RESOLUTION, BANDWIDTH and the audio group', () => {
    const map = mapOf(10);
    ready(map);
    const plan = planHls(map);
    const text = masterPlaylist(map, plan, { hi: 'avc1.64000d', audio: 'mp4a.40.2' });
    const { variants, audioUri } = checkMasterPlaylist(text);
    expect(audioUri).toBe('audio/playlist.m3u8');
    expect(variants.map((v) => [v.uri, v.resolution, v.codecs.join(','), v.audio])).toEqual([
      ['hi/playlist.m3u8', '320x180', 'avc1.64000d,mp4a.40.2', 'audio'],
      ['lo/playlist.m3u8', '160x90', 'avc1.640028,mp4a.40.2', 'audio'],
    ]);
    // Peak measured from accepted sizes: 7 shards x 5000 B over 2.1 s (video) plus 7 audio shards, above the nominal rates.
    const segBits = (r: number) => (8 * 7 * 5000) / plan.renditions[r]!.segments[0]!.duration;
    expect(variants[0]!.bandwidth).toBeGreaterThanOrEqual(Math.floor(segBits(0) + segBits(2)));
    // Nothing known yet: the nominal rates.
    const fresh = checkMasterPlaylist(masterPlaylist(mapOf(10), planHls(mapOf(10))));
    expect(fresh.variants.map((v) => v.bandwidth)).toEqual([596_000, 246_000]);
  });

  it('carry a viewer token on every URI they name, so relative URIs keep a private content’s access', () => {
    const map = mapOf(10);
    ready(map);
    const plan = planHls(map);
    const q = '?token=s%26cret';
    const master = masterPlaylist(map, plan, {}, q);
    const { variants, audioUri } = checkMasterPlaylist(master);
    expect([...variants.map((v) => v.uri), audioUri]).toEqual(['hi/playlist.m3u8', 'lo/playlist.m3u8', 'audio/playlist.m3u8'].map((u) => u + q));
    const hi = plan.renditions[0]!;
    const facts = checkMediaPlaylist(mediaPlaylist(hi, { listed: hi.segments.length, ended: true, query: q }));
    expect(facts.segments.every((s) => s.uri.endsWith(q) && s.map!.endsWith(q))).toBe(true);
    expect(facts.segments).toHaveLength(hi.segments.length);
  });

  it('an audio-only content is one variant stream: the audio playlist', () => {
    const map = mapOf(4, [LADDER[2]!]);
    const plan = planHls(map);
    expect(plan.renditions.map((r) => r.id)).toEqual(['audio']);
    const { variants, audioUri } = checkMasterPlaylist(masterPlaylist(map, plan));
    expect(audioUri).toBeUndefined();
    expect(variants.map((v) => [v.uri, v.codecs.join(',')])).toEqual([['audio/playlist.m3u8', 'mp4a.40.2']]);
  });
});
