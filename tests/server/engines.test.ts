/**
 * Scheduling by engine: the pool names, in every job, the engine of the
 * encoder that finishes it soonest (the fastest that makes the codec), and
 * keeps the "engine@build" each accepted shard was made with; an engine no
 * check covers is never given a job.
 */
import fs from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { autoEncode, BYTELESS, waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

let clip: Uint8Array;
let server: TestServer | undefined;
const peers: WsPeer[] = [];

beforeAll(async () => {
  clip = fs.readFileSync(await fixture('av-2997'));
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

const ladder = [
  { id: '180p', video: { codec: 'h264', width: 320, height: 180, bitrate: 300_000 } },
  { id: 'vp9', video: { codec: 'vp9', width: 160, height: 90, bitrate: 120_000 } },
  { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
];

/** Every shard says which engine (with a build) made it: the one its job named. */
const namedEngine = (job: Job) => `${job.engine}@build-1`;

describe('scheduling by engine', () => {
  it('names the fastest engine that makes the codec in each job, and records engine@build per accepted shard', async () => {
    // Hashes only, no bytes (and so no cross-checks): this test is about which engine gets which job.
    server = await startTestServer({ heartbeatMs: 100, heartbeatTimeoutMs: 2000, ...BYTELESS });
    const both = await WsPeer.encoder(server.url, {
      capabilities: {
        engines: [
          { name: 'ffmpeg-wasm', codecs: ['h264', 'aac'], speed: 2 },
          { name: 'webcodecs', codecs: ['h264', 'vp9'], speed: 20 },
        ],
        maxJobs: 1,
      },
    });
    // A tab without WebCodecs still takes the H.264 and audio work, with ffmpeg.wasm.
    const plain = await WsPeer.encoder(server.url, { capabilities: { engines: [{ name: 'ffmpeg-wasm', codecs: ['h264', 'aac'], speed: 2 }], maxJobs: 1 } });
    peers.push(both, plain);
    const jobsBoth: Job[] = [];
    const jobsPlain: Job[] = [];
    void autoEncode(both, jobsBoth, namedEngine);
    void autoEncode(plain, jobsPlain, namedEngine);
    const { json } = await upload(server.url, clip, `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    const map = await waitFor(
      async () => {
        const c = (await (await fetch(`${server!.url}/api/contents/${json.id}`)).json()) as { status: string; shardMap: ShardMap };
        return c.status === 'ready' ? c.shardMap : undefined;
      },
      'content ready',
      30_000,
    );

    const engineOf = (j: Job) => `${j.rendition}:${j.engine}`;
    for (const j of jobsBoth) expect(engineOf(j)).toBe(j.rendition === 'audio' ? 'audio:ffmpeg-wasm' : `${j.rendition}:webcodecs`);
    for (const j of jobsPlain) expect(engineOf(j)).toBe(`${j.rendition}:ffmpeg-wasm`);
    expect(jobsPlain.some((j) => j.rendition === '180p')).toBe(true);
    // VP9 only ever goes to the tab that can make it.
    expect(jobsPlain.some((j) => j.rendition === 'vp9')).toBe(false);
    const engines = new Set(map.shards.map((s) => s.renditions['180p']!.engine));
    expect(engines).toEqual(new Set(['webcodecs@build-1', 'ffmpeg-wasm@build-1']));
    expect(map.shards.every((s) => s.renditions['vp9']!.engine === 'webcodecs@build-1')).toBe(true);
    expect(map.shards.every((s) => s.renditions['audio']!.engine === 'ffmpeg-wasm@build-1')).toBe(true);
  });

  it('never gives a job to an engine no check covers, however fast it says it is', async () => {
    // The default: an engine in neither --verify-engines nor --verify-picture-engines makes shards nobody could compare.
    server = await startTestServer({
      heartbeatMs: 100,
      heartbeatTimeoutMs: 2000,
      ...BYTELESS,
      testHooks: { verifyShardBytes: false, scheduleUncheckedEngines: false },
    });
    const rogue = await WsPeer.encoder(server.url, { capabilities: { engines: [{ name: 'turbo', codecs: ['h264', 'aac'], speed: 1000 }], maxJobs: 4 } });
    const honest = await WsPeer.encoder(server.url, { capabilities: { engines: [{ name: 'ffmpeg-wasm', codecs: ['h264', 'aac'], speed: 1 }], maxJobs: 1 } });
    peers.push(rogue, honest);
    const jobsRogue: Job[] = [];
    const jobsHonest: Job[] = [];
    void autoEncode(rogue, jobsRogue, namedEngine);
    void autoEncode(honest, jobsHonest, namedEngine);
    const { json } = await upload(server.url, clip);
    await waitFor(
      async () => ((await (await fetch(`${server!.url}/api/contents/${json.id}`)).json()) as { status: string }).status === 'ready' || undefined,
      'content ready',
      30_000,
    );
    expect(jobsRogue).toEqual([]);
    expect(jobsHonest.length).toBeGreaterThan(0);
    expect(jobsHonest.every((j) => j.engine === 'ffmpeg-wasm')).toBe(true);
  });
});
