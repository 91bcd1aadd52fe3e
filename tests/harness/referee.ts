/**
 * Native ffmpeg as the referee for media the product made: stream facts,
 * decode errors, PSNR against a source, silences and decoded samples.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BufferSource, EncodedPacketSink, Input, MP4 } from 'mediabunny';
import { ffprobeJson } from './fixtures.ts';

const run = promisify(execFile);

export async function streams(file: string) {
  const j = await ffprobeJson(file, ['-show_streams', '-show_format']);
  return {
    video: j.streams.find((s: { codec_type: string }) => s.codec_type === 'video'),
    audio: j.streams.find((s: { codec_type: string }) => s.codec_type === 'audio'),
    duration: Number(j.format.duration),
  };
}

/** [first timestamp, end of the last sample] of a shard file's one track, in seconds, as its MP4 says. */
export async function shardSpan(bytes: Uint8Array): Promise<[number, number]> {
  const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
  try {
    const track = (await input.getTracks())[0];
    if (!track) throw new Error('the shard has no track');
    let [start, end] = [Infinity, -Infinity];
    for await (const p of new EncodedPacketSink(track).packets(undefined, undefined, { metadataOnly: true })) {
      start = Math.min(start, p.timestamp);
      end = Math.max(end, p.timestamp + p.duration);
    }
    return [start, end];
  } finally {
    input.dispose();
  }
}

/** Decodes every frame; native ffmpeg prints nothing at -v error for a clean stream. */
export async function decodeErrors(file: string): Promise<string> {
  const { stderr } = await run('ffmpeg', ['-v', 'error', '-i', file, '-f', 'null', '-'], { maxBuffer: 16 * 2 ** 20 });
  return stderr.trim();
}

export async function psnr(exported: string, source: string, width: number, height: number): Promise<number> {
  // Frame-indexed, with the source scaled to the export's size.
  const graph = `[0:v]setpts=N/TB/30[x];[1:v]scale=${width}:${height}:flags=bicubic,setpts=N/TB/30[y];[x][y]psnr`;
  const { stderr } = await run('ffmpeg', ['-v', 'info', '-i', exported, '-i', source, '-lavfi', graph, '-f', 'null', '-'], { maxBuffer: 16 * 2 ** 20 });
  return Number(/PSNR .*average:([\d.]+)/.exec(stderr)?.[1]);
}

/** Silences of 5 ms or more, as [start, end] in seconds, up to `end` s. */
export async function silences(file: string, end: number): Promise<[number, number][]> {
  // Only up to the source's own audio end: the last AAC frame of the source is
  // padded (10 s of tone in 469 frames of 1024 samples), and ffmpeg decodes
  // that padding as 5.3 ms of silence in the source and the export alike.
  const { stderr } = await run('ffmpeg', ['-v', 'info', '-i', file, '-vn', '-af', `atrim=end=${end},silencedetect=noise=-50dB:d=0.005`, '-f', 'null', '-'], {
    maxBuffer: 16 * 2 ** 20,
  });
  const starts = [...stderr.matchAll(/silence_start: ([\d.]+)/g)].map((m) => Number(m[1]));
  const ends = [...stderr.matchAll(/silence_end: ([\d.]+)/g)].map((m) => Number(m[1]));
  return starts.map((s, i) => [s, ends[i] ?? end]);
}

/** The first audio track decoded to mono float samples at 48 kHz. */
export async function pcm(file: string): Promise<Float32Array> {
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', file, '-vn', '-ac', '1', '-ar', '48000', '-f', 'f32le', '-'], {
    encoding: 'buffer',
    maxBuffer: 64 * 2 ** 20,
  });
  return new Float32Array(stdout.buffer.slice(stdout.byteOffset, stdout.byteOffset + stdout.byteLength));
}
