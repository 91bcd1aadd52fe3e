/**
 * The real-world input shapes (issue 17), made by native ffmpeg: each a small
 * file (about 320x180, 1-4 s) shaped like what people upload, generated once
 * into tests/fixtures/.cache/inputs and reused. Every shape lists the ffmpeg
 * steps that make it, so other suites (rotation, frame holds) add shapes here
 * and judge them with tests/harness/inputJudge.ts.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { FIXTURE_DIR } from './fixtures.ts';

const run = promisify(execFile);
const DIR = path.join(FIXTURE_DIR, 'inputs');

const video = (size = '320x180', rate = '30', secs = 4) => ['-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}:duration=${secs}`];
/**
 * The sound: seeded pink noise, not a tone. The judge finds the A/V offset by cross-correlating the export's audio
 * with the source's, which a periodic tone would leave ambiguous (and an onset blurs after two lossy encodes).
 */
const tone = (secs = 4, sr = 48000, layout = 'stereo') => [
  '-f',
  'lavfi',
  '-i',
  `anoisesrc=color=pink:seed=17:amplitude=0.25:sample_rate=${sr}:duration=${secs},aformat=channel_layouts=${layout}`,
];
const x264 = (...extra: string[]) => ['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', ...extra];
const aac = (...extra: string[]) => ['-c:a', 'aac', '-b:a', '96k', ...extra];

/**
 * One step: ffmpeg arguments (after `-y -v error`), where `{in}` is the previous step's output and `{out}` this
 * step's. The last step's output is the fixture.
 */
type Step = string[];

export interface InputShape {
  /** Stable name; the file is `<name>.<ext>`. */
  name: string;
  ext: string;
  /** What the shape stands for (the words). */
  about: string;
  steps: Step[];
  /** Expected refusal instead of playback: HTTP status and a word the message must contain. */
  refused?: { status: number; mentions: string };
  /** Published as `normalizing`: volunteers' ffmpeg.wasm makes its mezzanine first (tests/e2e/mezzanine.test.ts). */
  normalized?: true;
}

const one = (args: string[], ext: string): Step[] => [[...args, '-f', ext === 'mkv' ? 'matroska' : ext === 'ts' ? 'mpegts' : ext, '{out}']];

export const INPUT_SHAPES: InputShape[] = [
  {
    name: 'open-gop-h264',
    ext: 'mp4',
    about: 'open GOP H.264 with B-frames: leading frames of each GOP reference the previous one',
    steps: one([...video(), ...tone(), ...x264('-x264-params', 'open-gop=1:keyint=45:min-keyint=45:scenecut=0:bframes=3'), ...aac()], 'mp4'),
  },
  {
    name: 'open-gop-hevc',
    ext: 'mp4',
    about: 'open GOP HEVC (x265 CRA key frames with RASL frames)',
    steps: one(
      [
        ...video(),
        ...tone(),
        '-c:v',
        'libx265',
        '-preset',
        'ultrafast',
        '-pix_fmt',
        'yuv420p',
        '-tag:v',
        'hvc1',
        '-x265-params',
        'open-gop=1:keyint=45:min-keyint=45:scenecut=0:bframes=3:log-level=error',
        ...aac(),
      ],
      'mp4',
    ),
  },
  {
    name: 'trim-copy',
    ext: 'mp4',
    about: 'trimmed by stream copy (-ss 1 -c copy), no B-frames: an edit list hides the pre-roll from the key frame before 1 s',
    steps: [
      [...video(), ...tone(), ...x264('-g', '60', '-bf', '0'), ...aac(), '-f', 'mp4', '{out}'],
      ['-ss', '1.0', '-i', '{in}', '-c', 'copy', '-f', 'mp4', '{out}'],
    ],
  },
  {
    name: 'trim-copy-bframes',
    ext: 'mp4',
    about: 'trimmed by stream copy with B-frames (composition offsets and an edit list)',
    steps: [
      [...video(), ...tone(), ...x264('-g', '60', '-bf', '3'), ...aac(), '-f', 'mp4', '{out}'],
      ['-ss', '1.0', '-i', '{in}', '-c', 'copy', '-f', 'mp4', '{out}'],
    ],
  },
  {
    name: 'webm-vp8',
    ext: 'webm',
    about: 'WebM VP8 + Vorbis, millisecond timestamps',
    steps: one([...video(), ...tone(), '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k', '-c:a', 'libvorbis', '-q:a', '3'], 'webm'),
  },
  {
    name: 'webm-vp9',
    ext: 'webm',
    about: 'WebM VP9 + Opus, millisecond timestamps',
    steps: one(
      [...video(), ...tone(), '-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k', '-c:a', 'libopus', '-b:a', '64k'],
      'webm',
    ),
  },
  { name: 'mkv-h264', ext: 'mkv', about: 'Matroska H.264 + AAC', steps: one([...video(), ...tone(), ...x264('-g', '60'), ...aac()], 'mkv') },
  {
    name: 'ogg-theora',
    ext: 'ogg',
    about: 'Ogg Theora + Vorbis: no demuxer of the server reads it; a volunteer tab normalises it',
    steps: one([...video(), ...tone(), '-c:v', 'libtheora', '-q:v', '6', '-c:a', 'libvorbis', '-q:a', '3'], 'ogg'),
    normalized: true,
  },
  {
    name: 'ts-10s',
    ext: 'ts',
    about: 'MPEG-TS whose clock starts at 10 s (a broadcast capture)',
    steps: one([...video(), ...tone(), ...x264('-g', '60'), ...aac(), '-output_ts_offset', '10', '-muxdelay', '0', '-muxpreload', '0'], 'ts'),
  },
  {
    name: 'odd-size',
    ext: 'mp4',
    about: 'a size that is no multiple of 16 (318x178)',
    steps: one([...video('318x178'), ...tone(), ...x264('-g', '60'), ...aac()], 'mp4'),
  },
  {
    name: 'anamorphic',
    ext: 'mp4',
    about: 'non-square pixels: 320x180 stored, SAR 4:3, shown 427x180',
    steps: one([...video(), ...tone(), '-vf', 'setsar=4/3', ...x264('-g', '60'), ...aac()], 'mp4'),
  },
  {
    name: 'audio-first',
    ext: 'mp4',
    about: 'audio starts 0.5 s before the video',
    steps: one(['-itsoffset', '0.5', ...video('320x180', '30', 3.5), ...tone(), ...x264('-g', '60'), '-fps_mode', 'passthrough', ...aac()], 'mp4'),
  },
  {
    name: 'video-first',
    ext: 'mp4',
    about: 'audio starts 0.5 s after the video',
    steps: one([...video(), '-itsoffset', '0.5', ...tone(3.5), ...x264('-g', '60'), ...aac()], 'mp4'),
  },
  {
    name: 'no-edit-list',
    ext: 'mp4',
    about: 'B-frame delay without an edit list: video presented from 0.083 s, audio from 0',
    steps: one([...video('320x180', '24'), ...tone(), ...x264('-bf', '2'), ...aac(), '-use_editlist', '0'], 'mp4'),
  },
  {
    name: 'surround-44k',
    ext: 'mp4',
    about: '5.1 AAC at 44.1 kHz',
    steps: one([...video(), ...tone(4, 44100, '5.1'), ...x264('-g', '60'), ...aac()], 'mp4'),
  },
  {
    name: 'mono-22k',
    ext: 'mp4',
    about: 'mono AAC at 22.05 kHz',
    steps: one([...video(), ...tone(4, 22050, 'mono'), ...x264('-g', '60'), ...aac()], 'mp4'),
  },
  {
    name: 'shorter-than-shard',
    ext: 'mp4',
    about: 'a 0.2 s file, shorter than one shard',
    steps: one([...video('320x180', '30', 0.2), ...tone(0.2), ...x264(), ...aac()], 'mp4'),
  },
  {
    name: 'long-gop',
    ext: 'mp4',
    about: 'one key frame in the whole file (a 30 s GOP, cut short)',
    steps: one([...video(), ...tone(), ...x264('-g', '900', '-keyint_min', '900', '-sc_threshold', '0'), ...aac()], 'mp4'),
  },
];

export function inputShape(name: string): InputShape {
  const s = INPUT_SHAPES.find((x) => x.name === name);
  if (!s) throw new Error(`no input shape "${name}"; known: ${INPUT_SHAPES.map((x) => x.name).join(', ')}`);
  return s;
}

const pending = new Map<string, Promise<string>>();

/**
 * The path of a shape's file, made on first use (temp files renamed into place, so parallel test files never see
 * half a fixture). Throws with ffmpeg's stderr if a step fails.
 */
export function inputFixture(shape: InputShape): Promise<string> {
  const file = path.join(DIR, `${shape.name}.${shape.ext}`);
  let p = pending.get(file);
  if (!p) {
    p = (async () => {
      if (fs.existsSync(file)) return file;
      fs.mkdirSync(DIR, { recursive: true });
      const tag = randomBytes(4).toString('hex');
      const outs = shape.steps.map((_, i) => `${file}.tmp-${tag}-${i}.${shape.ext}`);
      try {
        for (const [i, step] of shape.steps.entries()) {
          const args = step.map((a) => (a === '{out}' ? outs[i]! : a === '{in}' ? outs[i - 1]! : a));
          await run('ffmpeg', ['-v', 'error', '-y', ...args]).catch((e: { stderr?: string }) => {
            throw new Error(`making input shape ${shape.name}, step ${i + 1}: ${e.stderr ?? String(e)}`);
          });
        }
        fs.renameSync(outs.at(-1)!, file);
      } finally {
        for (const o of outs) fs.rmSync(o, { force: true });
      }
      return file;
    })();
    pending.set(file, p);
  }
  return p;
}
