/** The encoder tab's controllers on their own: the engine offer's fallback policy and the job executor's flow. */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_ENCODER_CONFIG } from '../../src/encoder/config.ts';
import { EngineOffer } from '../../src/encoder/EngineOffer.ts';
import type { FfmpegEngine } from '../../src/encoder/FfmpegEngine.ts';
import { JobExecutor } from '../../src/encoder/JobExecutor.ts';
import { ShardStore } from '../../src/encoder/ShardStore.ts';
import type { ClientMessage, Job } from '../../src/shared/protocol.ts';

const run = vi.hoisted(() => ({ fn: undefined as undefined | ((job: Job) => Promise<unknown>) }));
vi.mock('../../src/encoder/JobRunner.ts', () => ({ runJob: (job: Job) => run.fn!(job) }));
vi.mock('../../src/encoder/WebCodecsEngine.ts', () => ({
  webCodecsCodecs: async () => ['h264', 'vp9'],
  webCodecsBuild: async () => 'Chromium/1-linux-x86',
  benchmarkWebCodecs: async () => ({ speed: 4, fps: 120 }),
}));

const fakeEngine = () => ({ threads: undefined, onProgress: undefined, onLog: undefined }) as unknown as FfmpegEngine;

function job(id: string, upload = false): Job {
  return {
    id,
    contentId: 'c',
    rendition: '360p',
    kind: 'video',
    video: { codec: 'h264', width: 640, height: 360, bitrate: 800_000 },
    shards: [{ index: 0, start: 0, duration: 0.3, frames: 9 }],
    sourceUrl: '/s',
    start: 0,
    end: 0.3,
    deadline: 0,
    upload,
  } as Job;
}

const result = (engine: string, fallback?: string) => ({
  shards: [{ index: 0, bytes: new Uint8Array([1, 2, 3]), sha256: 'a'.repeat(64) }],
  timings: { fetchMs: 1, execMs: 2, totalMs: 3, sliceBytes: 10, frames: 9 },
  engine,
  fallback,
});

describe('EngineOffer', () => {
  it('offers WebCodecs codecs with their build, and drops H.264 after repeated fallbacks only', async () => {
    const offer = new EngineOffer(fakeEngine(), { ...DEFAULT_ENCODER_CONFIG, engines: 'ffmpeg-wasm,webcodecs', webcodecsMaxFailures: 2 });
    const logs: string[] = [];
    offer.on('log', ({ line }) => logs.push(line));
    await offer.detect();
    expect(offer.settle().map((e) => [e.name, e.codecs])).toEqual([
      ['ffmpeg-wasm', ['h264', 'aac']],
      ['webcodecs', ['h264', 'vp9']],
    ]);
    expect(offer.buildOf('webcodecs')).toBe('webcodecs@Chromium/1-linux-x86');
    expect(offer.afterJob('webcodecs', 'fell back')).toBe(false);
    expect(offer.afterJob('webcodecs', undefined)).toBe(false); // a success resets the count
    expect(offer.afterJob('webcodecs', 'fell back')).toBe(false);
    expect(offer.afterJob('webcodecs', 'fell back')).toBe(true);
    expect(offer.jobOffer().codecs).toEqual(['vp9']);
    expect(offer.reports.find((e) => e.name === 'webcodecs')?.codecs).toEqual(['vp9']);
    expect(logs.at(-1)).toMatch(/H\.264 stays on ffmpeg\.wasm/);
  });

  it('offers no WebCodecs when the config leaves it out', async () => {
    const offer = new EngineOffer(fakeEngine(), { ...DEFAULT_ENCODER_CONFIG, engines: 'ffmpeg-wasm' });
    await offer.detect();
    expect(offer.settle().map((e) => e.name)).toEqual(['ffmpeg-wasm']);
  });
});

describe('JobExecutor', () => {
  let sent: ClientMessage[];
  let store: ShardStore;
  let exec: JobExecutor;
  beforeEach(async () => {
    sent = [];
    store = new ShardStore(1 << 20, undefined);
    const offer = new EngineOffer(fakeEngine(), DEFAULT_ENCODER_CONFIG);
    exec = new JobExecutor(fakeEngine(), offer, store, (m) => sent.push(m) > 0, DEFAULT_ENCODER_CONFIG, 'http://x');
  });
  const idle = () => new Promise<void>((r) => exec.on('busy', ({ busy }) => !busy && r()));

  it('keeps the shards, reports them ready, then the job done', async () => {
    run.fn = async () => result('ffmpeg-wasm');
    const done = idle();
    exec.add(job('j1'));
    await done;
    expect(sent.map((m) => m.type)).toEqual(['shard-ready', 'job-done']);
    expect(store.has({ contentId: 'c', rendition: '360p', index: 0 })).toBe(true);
    expect(exec.stats).toMatchObject({ jobsDone: 1, shardsEncoded: 1, framesEncoded: 9, current: undefined });
  });

  it('runs one job at a time and never reports a job cancelled meanwhile', async () => {
    let release!: () => void;
    run.fn = (j) => (j.id === 'j1' ? new Promise((r) => (release = () => r(result('ffmpeg-wasm')))) : Promise.resolve(result('ffmpeg-wasm')));
    const done = idle();
    exec.add(job('j1'));
    exec.add(job('j2'));
    exec.add(job('j3'));
    expect(exec.busy).toBe(true);
    exec.cancel('j1'); // running: finished but not reported
    exec.cancel('j2'); // queued: dropped
    release();
    await done;
    expect(sent.filter((m) => m.type === 'job-done')).toEqual([{ type: 'job-done', jobId: 'j3' }]);
  });

  it('reports a failed job with its reason, unless the pool already took it back', async () => {
    run.fn = async () => {
      throw new Error('boom');
    };
    let done = idle();
    exec.add(job('j1'));
    await done;
    expect(sent).toEqual([{ type: 'job-failed', jobId: 'j1', reason: 'boom' }]);
    expect(exec.stats).toMatchObject({ jobsFailed: 1, lastError: 'boom' });
    done = idle();
    exec.add(job('j2'));
    exec.cancelAll();
    await done;
    expect(sent).toHaveLength(1);
  });

  it('asks for new capabilities when a fallback takes WebCodecs H.264 out of the offer', async () => {
    const offer = new EngineOffer(fakeEngine(), { ...DEFAULT_ENCODER_CONFIG, engines: 'ffmpeg-wasm,webcodecs', webcodecsMaxFailures: 1 });
    await offer.detect();
    offer.settle();
    exec = new JobExecutor(fakeEngine(), offer, store, (m) => sent.push(m) > 0, DEFAULT_ENCODER_CONFIG, 'http://x');
    const changed: string[] = [];
    exec.on('offer-changed', () => changed.push('offer'));
    exec.on('log', ({ line }) => changed.push(line));
    offer.on('log', ({ line }) => changed.push(line));
    run.fn = async () => result('ffmpeg-wasm', 'WebCodecs failed, ffmpeg.wasm finished');
    const done = idle();
    exec.add(job('j1'));
    await done;
    expect(changed.slice(0, 3)).toEqual(['job j1: WebCodecs failed, ffmpeg.wasm finished', expect.stringMatching(/H\.264 stays/), 'offer']);
    expect(exec.stats.fallbacks).toBe(1);
  });
});
