/**
 * The concealment fragments, decoded by native ffmpeg (the referee): the
 * hand-built AAC frames must be valid AAC-LC that decodes to exact silence.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { aacAudioSpecificConfig, aacSilentFrame } from '../../src/shared/aac.ts';
import { silenceFragment } from '../../src/viewer/conceal.ts';

const run = promisify(execFile);

/** Decodes a file with native ffmpeg to 16-bit PCM, failing on any decoder complaint. */
async function decode(file: string, channels: number): Promise<Int16Array> {
  const { stdout, stderr } = await run('ffmpeg', ['-v', 'error', '-xerror', '-i', file, '-f', 's16le', '-ac', String(channels), '-'], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  expect(stderr.toString()).toBe('');
  return new Int16Array(stdout.buffer, stdout.byteOffset, stdout.byteLength / 2);
}

function adts(frame: Uint8Array, sampleRateIndex: number, channelConfig: number): Uint8Array {
  const len = frame.length + 7;
  const h = [
    0xff,
    0xf1,
    (1 << 6) | (sampleRateIndex << 2) | (channelConfig >> 2),
    ((channelConfig & 3) << 6) | (len >> 11),
    (len >> 3) & 0xff,
    ((len & 7) << 5) | 0x1f,
    0xfc,
  ];
  return new Uint8Array([...h, ...frame]);
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'conceal-'));

describe('AAC silence', () => {
  it.each([1, 2, 3, 6])('a %i-channel silent frame decodes to 1024 zero samples per channel', async (channels) => {
    const frame = aacSilentFrame(channels);
    const file = path.join(tmp(), 's.aac');
    const stream = Array.from({ length: 20 }, () => adts(frame, 3, channels === 8 ? 7 : channels));
    fs.writeFileSync(file, Buffer.concat(stream));
    const pcm = await decode(file, channels);
    expect(pcm.length).toBe(20 * 1024 * channels);
    expect(pcm.every((s) => s === 0)).toBe(true);
  });

  it('refuses channel counts AAC cannot signal, and rates without an index', () => {
    expect(() => aacSilentFrame(7)).toThrow(/channel configuration/);
    expect(() => aacAudioSpecificConfig(12345, 2)).toThrow(/12345 Hz/);
    expect([...aacAudioSpecificConfig(48000, 2)]).toEqual([0x11, 0x90]);
    expect([...aacAudioSpecificConfig(44100, 1)]).toEqual([0x12, 0x08]);
  });

  it('a silence fragment is a playable fMP4 of whole frames covering the asked length', async () => {
    const bytes = await silenceFragment(48000, 2, 14 * 1024 + 100);
    const file = path.join(tmp(), 's.mp4');
    fs.writeFileSync(file, bytes);
    const pcm = await decode(file, 2);
    expect(pcm.length).toBe(15 * 1024 * 2);
    expect(pcm.every((s) => s === 0)).toBe(true);
  });
});
