/**
 * Node-side encoders over the real protocol, for trust tests: native ffmpeg
 * (the referee) with the tab's own command line makes the shards, which are
 * uploaded with the job's token and reported like a tab does. A cheating one
 * makes structurally valid shards (codec, size, frame count, key frame first
 * all right) of the wrong pictures: black, or the picture negated (standing
 * in for another content's frames).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { segmentName, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import type { Job } from '../../src/shared/protocol.ts';
import { WsPeer } from './wsPeer.ts';

const run = promisify(execFile);

/**
 * 'sleeper': honest for its first SLEEPER_HONEST_JOBS jobs (long enough to earn trust), black after.
 * 'swap': honest pictures, but each job's second shard is its first shard's bytes (one shard passed off as another).
 */
export type Honesty = 'honest' | 'black' | 'other' | 'sleeper' | 'swap';
export const SLEEPER_HONEST_JOBS = 3;

/** The engine string these encoders report; cross-checks compare only equal engine strings. */
export const NATIVE_ENGINE = 'ffmpeg-native';

/** Encodes a video job's shards natively; a cheat changes the pictures, not the structure. */
export async function encodeJob(base: string, job: Job, honesty: Exclude<Honesty, 'sleeper'>): Promise<Uint8Array[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'native-enc-'));
  try {
    const slice = await fetch(new URL(job.sourceUrl, base));
    if (!slice.ok) throw new Error(`slice: HTTP ${slice.status}`);
    fs.writeFileSync(path.join(dir, 'in.mp4'), new Uint8Array(await slice.arrayBuffer()));
    const args = videoJobArgs(
      job,
      Number(slice.headers.get('x-slice-start')),
      path.join(dir, 'in.mp4'),
      { preset: 'veryfast', threads: 1 },
      path.join(dir, 'shard_%04d.mp4'),
    );
    const vf = args.indexOf('-vf') + 1;
    if (honesty === 'black') args[vf] = `${args[vf]},drawbox=color=black:t=fill`;
    if (honesty === 'other') args[vf] = `${args[vf]},negate`;
    await run('ffmpeg', ['-v', 'error', ...args]);
    const shards = job.shards.map((_, i) => new Uint8Array(fs.readFileSync(path.join(dir, segmentName(i)))));
    if (honesty === 'swap' && shards.length > 1) shards[1] = shards[0]!;
    return shards;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface NativeEncoder {
  peer: WsPeer;
  /** Hash of every shard this encoder reported, by "content/rendition/index". */
  made: Map<string, string>;
  jobs: number;
  stop(): void;
}

/**
 * What the server answered a shard upload (its HTTP status), or why a job's work failed before any answer
 * (a fetch error, a failed slice or encode): for tests that must see every answer, e.g. across a kill.
 */
export type UploadObserver = (what: string, answer: number | Error) => void;

/**
 * Joins as an encoder (of `engine`) and answers every job (cross-checks included) until stopped or disconnected.
 * `claim`: the engine its shard-ready messages name (default `engine`; undefined leaves it out), for cheaters that lie about it.
 */
export async function nativeEncoder(
  base: string,
  honesty: Honesty,
  engine = NATIVE_ENGINE,
  observe?: UploadObserver,
  claim: (job: Job) => string | undefined = () => engine,
): Promise<NativeEncoder> {
  // A cheater can claim any engine: claiming the tabs' own gets its shards compared with theirs.
  // `engine` may carry a build ("name@build"): it offers that engine with that build, and its shards claim both.
  const [name, build] = engine.split('@') as [string, string | undefined];
  const peer = await WsPeer.encoder(base, { capabilities: { engines: [{ name, ...(build && { build }), codecs: ['h264'] }], maxJobs: 1 } });
  const me: NativeEncoder = { peer, made: new Map(), jobs: 0, stop: () => peer.close() };
  void (async () => {
    for (;;) {
      let job: Job;
      try {
        job = (await peer.next('job', () => true, 600_000)).job;
      } catch {
        return;
      }
      let shards: Uint8Array[];
      try {
        shards = await encodeJob(base, job, honesty === 'sleeper' ? (me.jobs < SLEEPER_HONEST_JOBS ? 'honest' : 'black') : honesty);
      } catch (e) {
        observe?.(`job ${job.id}`, e as Error);
        peer.send({ type: 'job-failed', jobId: job.id, reason: String(e).slice(0, 900) });
        continue;
      }
      for (const [i, bytes] of shards.entries()) {
        const key = { contentId: job.contentId, rendition: job.rendition, index: job.shards[i]!.index };
        const url = `${base}/api/contents/${key.contentId}/shards/${key.rendition}/${key.index}`;
        const res = await fetch(url, {
          method: 'PUT',
          body: bytes as Uint8Array<ArrayBuffer>,
          headers: { Authorization: `Bearer ${job.uploadToken}` },
        }).catch((e: unknown) => void observe?.(`PUT ${url}`, e as Error));
        if (res) observe?.(`PUT ${url}`, res.status);
        if (!res?.ok) continue;
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        me.made.set(`${key.contentId}/${key.rendition}/${key.index}`, sha256);
        const named = claim(job);
        peer.send({ type: 'shard-ready', jobId: job.id, key, sha256, size: bytes.byteLength, ...(named !== undefined && { engine: named }) });
      }
      me.jobs++;
      peer.send({ type: 'job-done', jobId: job.id });
    }
  })();
  return me;
}
