/**
 * The structure check before acceptance (signaling/ShardIntake.ts,
 * signaling/media/validate.ts), one refusal per defect: a real server, real
 * HTTP PUTs with the job's upload token, and real fMP4 shards made like a tab
 * makes them (native ffmpeg with the tab's command lines, the tab's audio
 * cutter), each broken in one way (tests/harness/badShards.ts). Every refusal
 * must name its reason to the encoder and leave nothing staged, accepted or
 * cached; an upload outside the token's job is refused before any check.
 * The honest shards, uploaded last to the same keys, are accepted: the
 * refusals were for the defects, not the setup.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AudioShardOut } from '../../src/encoder/audioCutter.ts';
import type { Job } from '../../src/shared/protocol.ts';
import type { ShardKey, ShardMap } from '../../src/shared/shardMap.ts';
import {
  encodeAudioJob,
  ffmpegOn,
  firstSampleNotSync,
  firstSamples,
  muxedTogether,
  stretched,
  withBoxAppended,
  withMdatPadding,
} from '../harness/badShards.ts';
import { fixture } from '../harness/fixtures.ts';
import { encodeJob, NATIVE_ENGINE } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

/** One H.264 rendition and the audio rendition, small. */
const LADDER = encodeURIComponent(
  JSON.stringify([
    { id: 'v', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } },
    { id: 'audio', audio: { codec: 'aac', bitrate: 128_000, sampleRate: 48000, channels: 2 } },
  ]),
);

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let s: TestServer;
let id: string;
let other: string;
let vPeer: WsPeer;
let aPeer: WsPeer;
let vJob: Job;
let aJob: Job;
let goodVideo: Uint8Array[];
let goodAudio: AudioShardOut[];
/** The video key every bad video shard is sent to, and the audio key (a shard with no lead or tail). */
let vKey: ShardKey;
let aKey: ShardKey;
let aShard: AudioShardOut;

interface Case {
  what: string;
  code: string;
  rendition: 'v' | 'audio';
  bytes: () => Promise<Uint8Array> | Uint8Array;
  /** Audio: the lead and tail the upload declares (default: the honest shard's). */
  lead?: number;
  tail?: number;
  reason: RegExp;
}

beforeAll(async () => {
  s = await startTestServer({
    // No cross-checks (this file is about the check before acceptance); every refusal counts against
    // the encoder, so quarantine is set out of reach; deadlines far away so tokens stay valid on a slow machine.
    verifySampleRate: 0,
    verifyNewEncoderJobs: 0,
    quarantineAfterInvalid: 1000,
    jobDeadlineMinMs: 600_000,
    heartbeatMs: 500,
    heartbeatTimeoutMs: 60_000,
  });
  const clip = fs.readFileSync(await fixture('av-2997'));
  const r = await upload(s.url, clip, `?renditions=${LADDER}`);
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  id = r.json.id;
  // One encoder per kind, so each gets the job kind it is here for.
  vPeer = await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: NATIVE_ENGINE, codecs: ['h264'] }], maxJobs: 1 } });
  aPeer = await WsPeer.encoder(s.url, { capabilities: { engines: [{ name: NATIVE_ENGINE, codecs: ['aac'] }], maxJobs: 1 } });
  vJob = (await vPeer.next('job')).job;
  aJob = (await aPeer.next('job')).job;
  expect([vJob.contentId, vJob.rendition, aJob.contentId, aJob.rendition]).toEqual([id, 'v', id, 'audio']);
  expect(vJob.shards.length).toBeGreaterThan(2);
  // Another content, published after both encoders are busy: its keys belong to no job of theirs.
  other = (await upload(s.url, clip, `?renditions=${LADDER}`)).json.id;
  [goodVideo, goodAudio] = await Promise.all([encodeJob(s.url, vJob, 'honest'), encodeAudioJob(s.url, aJob)]);
  vKey = { contentId: id, rendition: 'v', index: vJob.shards[0]!.index };
  aShard = goodAudio.find((c) => c.lead === 0 && c.tail === 0)!;
  aKey = { contentId: id, rendition: 'audio', index: aShard.index };
}, 120_000);

afterAll(async () => {
  vPeer?.close();
  aPeer?.close();
  await s?.destroy();
});

const put = (key: ShardKey, body: Uint8Array, token: string, query = '') =>
  fetch(`${s.url}/api/contents/${key.contentId}/shards/${key.rendition}/${key.index}${query}`, {
    method: 'PUT',
    body: body as Uint8Array<ArrayBuffer>,
    headers: { Authorization: `Bearer ${token}` },
  });

async function mapOf(contentId: string): Promise<ShardMap> {
  return ((await (await fetch(`${s.url}/api/contents/${contentId}`)).json()) as { shardMap: ShardMap }).shardMap;
}

/**
 * Nothing of the refused bytes stayed: the shard is not accepted, not in the cache, nothing was
 * staged (a shard-ready for those bytes is answered "not uploaded"), and that answer is the next
 * rejection the encoder gets (so the refusal sent it exactly one, or none).
 */
async function expectNothingKept(peer: WsPeer, job: Job, key: ShardKey, bytes: Uint8Array, extra: { lead?: number; tail?: number } = {}): Promise<void> {
  const st = (await mapOf(key.contentId)).shards[key.index]!.renditions[key.rendition];
  expect(st?.status).not.toBe('ready');
  expect(st?.sha256).toBeUndefined();
  expect((await fetch(`${s.url}/api/contents/${key.contentId}/shards/${key.rendition}/${key.index}`)).status).toBe(404);
  const inJob = key.contentId === job.contentId && key.rendition === job.rendition && job.shards.some((x) => x.index === key.index);
  const probe = inJob ? key : { contentId: job.contentId, rendition: job.rendition, index: job.shards[0]!.index };
  peer.send({ type: 'shard-ready', jobId: job.id, key: probe, sha256: sha(bytes), size: bytes.byteLength, engine: NATIVE_ENGINE, ...extra });
  const barrier = await peer.next('shard-rejected');
  expect(barrier.reason).toMatch(/^not uploaded/);
}

describe('the structure check refuses', () => {
  const cases: Case[] = [
    { what: 'bytes that are no MP4', code: 'not-mp4', rendition: 'v', bytes: () => new Uint8Array(4096).fill(0x42), reason: /does not parse as an MP4/ },
    {
      what: 'a VP9 shard for an H.264 rendition',
      code: 'wrong-codec',
      rendition: 'v',
      bytes: async () => (await encodeJob(s.url, { ...vJob, shards: vJob.shards.slice(0, 1), video: { ...vJob.video!, codec: 'vp9' } }, 'honest'))[0]!,
      reason: /expected h264, got vp9/,
    },
    {
      what: 'a shard of another size',
      code: 'wrong-size',
      rendition: 'v',
      bytes: async () =>
        (await encodeJob(s.url, { ...vJob, shards: vJob.shards.slice(0, 1), video: { ...vJob.video!, width: 160, height: 90 } }, 'honest'))[0]!,
      reason: /expected 320x180, got 160x90/,
    },
    {
      what: 'a shard whose first sample is not a key frame',
      code: 'not-keyframe-first',
      rendition: 'v',
      bytes: () => firstSampleNotSync(goodVideo[0]!),
      reason: /does not start with a key frame/,
    },
    {
      what: 'a shard one frame short',
      code: 'wrong-frames',
      rendition: 'v',
      bytes: () => firstSamples(goodVideo[0]!, vJob.shards[0]!.frames - 1, 'v'),
      reason: /expected \d+ frames, got \d+/,
    },
    {
      what: 'a shard with the right frames over twice the time',
      code: 'wrong-duration',
      rendition: 'v',
      bytes: () => stretched(goodVideo[0]!, 2),
      reason: /expected 0\.30\d+ s \(within one frame\), got 0\.[56]\d+ s/,
    },
    {
      // The size bound (rendition bitrate x duration with slack, validate.ts maxShardBytes) refuses it before any parsing.
      what: 'an honest shard with an 8 MiB top-level free box appended',
      code: 'shard-too-large',
      rendition: 'v',
      bytes: () => withBoxAppended(goodVideo[0]!, 'free', 8 * 2 ** 20),
      reason: /\d+ bytes where a 0\.\d+ s shard at 400000 bit\/s may have at most \d+/,
    },
    {
      what: 'an honest shard with a small free box appended',
      code: 'unexpected-box',
      rendition: 'v',
      bytes: () => withBoxAppended(goodVideo[0]!, 'free', 512),
      reason: /only ftyp, moov, moof, mdat, mfra boxes at top level; this one has 'free'/,
    },
    {
      what: 'an honest shard with bytes no sample uses hidden at the end of its media data',
      code: 'unexpected-box',
      rendition: 'v',
      bytes: () => withMdatPadding(goodVideo[0]!, 4096),
      reason: /the media data has \d+ bytes where the samples take \d+/,
    },
    {
      what: 'an honest audio shard with a uuid box appended',
      code: 'unexpected-box',
      rendition: 'audio',
      bytes: () => withBoxAppended(aShard.bytes, 'uuid', 64),
      reason: /this one has 'uuid'/,
    },
    { what: 'an audio shard for a video rendition', code: 'wrong-track', rendition: 'v', bytes: () => aShard.bytes, reason: /must hold a video track/ },
    {
      what: 'a shard with a video and an audio track',
      code: 'wrong-track',
      rendition: 'v',
      bytes: () => muxedTogether(goodVideo[0]!, aShard.bytes),
      reason: /exactly one track; this one has 2/,
    },
    { what: 'a video shard for the audio rendition', code: 'wrong-track', rendition: 'audio', bytes: () => goodVideo[1]!, reason: /must hold an audio track/ },
    {
      what: 'an Opus shard for the AAC rendition',
      code: 'wrong-codec',
      rendition: 'audio',
      bytes: () =>
        ffmpegOn([aShard.bytes], ([i], o) => [
          '-i',
          i!,
          '-c:a',
          'libopus',
          '-b:a',
          '64k',
          '-ar',
          '48000',
          '-ac',
          '2',
          '-movflags',
          'frag_keyframe+empty_moov+default_base_moof',
          '-f',
          'mp4',
          o,
        ]),
      reason: /expected aac, got opus/,
    },
    {
      what: 'an audio shard one packet short',
      code: 'wrong-duration',
      rendition: 'audio',
      bytes: async () => firstSamples(aShard.bytes, (await mapOf(id)).shards[aShard.index]!.renditions.audio!.samples! / 1024 - 1, 'a'),
      reason: /expected (\d+) packets \(\d+ samples\), got \d+/,
    },
    {
      what: 'an honest audio shard declaring a lead it does not have',
      code: 'wrong-duration',
      rendition: 'audio',
      bytes: () => aShard.bytes,
      lead: 1024,
      reason: /expected \d+ packets/,
    },
  ];

  it.each(cases.map((c) => [c.what, c] as const))('%s', async (_what, c) => {
    const [peer, job, key] = c.rendition === 'v' ? [vPeer, vJob, vKey] : [aPeer, aJob, aKey];
    const bytes = await c.bytes();
    const lead = c.rendition === 'audio' ? (c.lead ?? aShard.lead) : undefined;
    const tail = c.rendition === 'audio' ? (c.tail ?? aShard.tail) : undefined;
    const query = lead === undefined ? '' : `?lead=${lead}&tail=${tail}`;
    // A failed case before this one may have left messages unread: start from a clean slate.
    peer.received.splice(0);
    const invalid = s.pool.health.get(peer.peerId).invalid;
    const { intakeChecks, intakeRefused } = s.pool.counters;
    const res = await put(key, bytes, job.uploadToken!, query);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect([res.status, body.error?.code], JSON.stringify(body)).toEqual([422, c.code]);
    expect(body.error.message).toMatch(c.reason);
    // The encoder is told, with the reason, and it counts against it.
    const rejected = await peer.next('shard-rejected');
    expect(rejected.key).toEqual(key);
    expect(rejected.reason).toMatch(new RegExp(`^structure check failed \\(${c.code}\\): `));
    expect(rejected.reason).toMatch(c.reason);
    expect(s.pool.health.get(peer.peerId).invalid).toBe(invalid + 1);
    expect(s.pool.counters).toMatchObject({ intakeChecks, intakeRefused: intakeRefused + 1 });
    await expectNothingKept(peer, job, key, bytes, lead === undefined ? {} : { lead, tail });
  });

  it.each([
    ['a shard of the same content and rendition outside the job', () => ({ contentId: id, rendition: 'v', index: vJob.shards.at(-1)!.index + 1 })],
    ['the same shard of another rendition', () => ({ contentId: id, rendition: 'audio', index: vJob.shards[0]!.index })],
    ['the same shard of another content', () => ({ contentId: other, rendition: 'v', index: vJob.shards[0]!.index })],
  ] as const)('with 409 not-in-job an upload for %s, before any check', async (_what, keyOf) => {
    const key = keyOf();
    vPeer.received.splice(0);
    const invalid = s.pool.health.get(vPeer.peerId).invalid;
    const { intakeChecks, intakeRefused } = s.pool.counters;
    const res = await put(key, goodVideo[0]!, vJob.uploadToken!);
    const body = (await res.json()) as { error: { code: string } };
    expect([res.status, body.error?.code], JSON.stringify(body)).toEqual([409, 'not-in-job']);
    // Not a structure failure: it does not count against the encoder, and no shard-rejected is sent
    // (the next rejection the encoder gets is the one expectNothingKept asks for).
    expect(s.pool.health.get(vPeer.peerId).invalid).toBe(invalid);
    expect(s.pool.counters).toMatchObject({ intakeChecks, intakeRefused });
    await expectNothingKept(vPeer, vJob, key, goodVideo[0]!);
  });
});

describe('after the refusals', () => {
  it('the honest shards for the same keys pass the check and are accepted and cached', async () => {
    const v = await put(vKey, goodVideo[0]!, vJob.uploadToken!);
    expect(v.status, await v.clone().text()).toBe(200);
    vPeer.send({ type: 'shard-ready', jobId: vJob.id, key: vKey, sha256: sha(goodVideo[0]!), size: goodVideo[0]!.byteLength, engine: NATIVE_ENGINE });
    await vPeer.next('shard-accepted', (m) => m.key.index === vKey.index);
    const a = await put(aKey, aShard.bytes, aJob.uploadToken!, `?lead=${aShard.lead}&tail=${aShard.tail}`);
    expect(a.status, await a.clone().text()).toBe(200);
    aPeer.send({
      type: 'shard-ready',
      jobId: aJob.id,
      key: aKey,
      sha256: sha(aShard.bytes),
      size: aShard.bytes.byteLength,
      lead: aShard.lead,
      tail: aShard.tail,
      engine: NATIVE_ENGINE,
    });
    await aPeer.next('shard-accepted', (m) => m.key.index === aKey.index);
    const map = await mapOf(id);
    expect(map.shards[vKey.index]!.renditions.v).toMatchObject({ status: 'ready', sha256: sha(goodVideo[0]!) });
    expect(map.shards[aKey.index]!.renditions.audio).toMatchObject({ status: 'ready', sha256: sha(aShard.bytes) });
    for (const [key, bytes] of [
      [vKey, goodVideo[0]!],
      [aKey, aShard.bytes],
    ] as const) {
      await waitFor(async () => {
        const r = await fetch(`${s.url}/api/contents/${key.contentId}/shards/${key.rendition}/${key.index}`);
        return r.status === 200 ? sha(new Uint8Array(await r.arrayBuffer())) === sha(bytes) : undefined;
      }, `the cached copy of ${key.rendition}/${key.index}`);
    }
  });
});
