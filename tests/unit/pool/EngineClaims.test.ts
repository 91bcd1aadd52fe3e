import { describe, expect, it } from 'vitest';
import type { Capabilities, Job } from '../../../src/shared/protocol.ts';
import { allowedEngines, engineClaimProblem } from '../../../signaling/pool/EngineClaims.ts';

const caps: Capabilities = {
  engines: [
    { name: 'ffmpeg-wasm', build: 'core-0.12.10-st/veryfast', codecs: ['h264', 'aac'] },
    { name: 'webcodecs', build: 'Chromium/150', codecs: ['h264', 'vp9'] },
    { name: 'native', codecs: ['h264'] },
  ],
  maxJobs: 1,
};
const job = (engine: string | undefined, codec: 'h264' | 'vp9' | 'aac'): Job =>
  ({
    id: 'j',
    ...(engine && { engine }),
    ...(codec === 'aac' ? { audio: { codec } } : { video: { codec } }),
  }) as unknown as Job;

describe('engine claims', () => {
  it('allows the assigned engine with its declared build, and ffmpeg.wasm as the fallback for H.264', () => {
    expect(allowedEngines(job('webcodecs', 'h264'), caps)).toEqual(['ffmpeg-wasm@core-0.12.10-st/veryfast', 'webcodecs@Chromium/150']);
    expect(allowedEngines(job('webcodecs', 'vp9'), caps)).toEqual(['webcodecs@Chromium/150']);
    expect(allowedEngines(job('ffmpeg-wasm', 'aac'), caps)).toEqual(['ffmpeg-wasm@core-0.12.10-st/veryfast']);
    // No build declared: the name alone.
    expect(allowedEngines(job('native', 'h264'), caps)).toEqual(['ffmpeg-wasm@core-0.12.10-st/veryfast', 'native']);
    expect(allowedEngines(job(undefined, 'h264'), caps)).toEqual([]);
  });

  it('refuses a missing engine, another engine and another build, with what was expected', () => {
    const j = job('webcodecs', 'vp9');
    expect(engineClaimProblem(j, caps, 'webcodecs@Chromium/150')).toBeUndefined();
    expect(engineClaimProblem(j, caps, undefined)).toMatch(/must name the engine .*webcodecs@Chromium\/150/);
    expect(engineClaimProblem(j, caps, 'webcodecs@Chromium/151')).toMatch(/is not the one job j assigned/);
    expect(engineClaimProblem(j, caps, 'ffmpeg-wasm@core-0.12.10-st/veryfast')).toMatch(/is not the one/);
    expect(engineClaimProblem(job('native', 'h264'), caps, 'native@x')).toMatch(/is not the one/);
  });
});
