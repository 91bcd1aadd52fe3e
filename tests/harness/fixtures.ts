/**
 * Test media made with native ffmpeg (the referee; never used by the product),
 * generated once into tests/fixtures/.cache and reused. Writes go to a temp
 * file renamed into place, so parallel test files never see half a fixture.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const FIXTURE_DIR = path.resolve(import.meta.dirname, '../fixtures/.cache');

const TESTSRC = (size: string, rate: string, secs: number) => ['-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}:duration=${secs}`];
const SINE = (secs: number, sr = 48000) => ['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=${sr}:duration=${secs}`];
const X264 = (gop: number) => [
  '-c:v',
  'libx264',
  '-preset',
  'veryfast',
  '-pix_fmt',
  'yuv420p',
  '-g',
  String(gop),
  '-keyint_min',
  String(gop),
  '-sc_threshold',
  '0',
];

/** How each fixture is made: ffmpeg arguments before the output path, and the file extension. */
const RECIPES = {
  /** 10 s testsrc2 320x180 at 29.97 fps (key frame every 5 s) with a 440 Hz stereo AAC tone. */
  'av-2997': { ext: 'mp4', args: [...TESTSRC('320x180', '30000/1001', 10), ...SINE(10), ...X264(150), '-c:a', 'aac', '-b:a', '128k', '-ac', '2'] },
  /** 3 s of the same at 29.97 fps (10 shards, key frame every 1.5 s), small enough for two tabs to encode twice over in seconds. */
  'av-3s': { ext: 'mp4', args: [...TESTSRC('320x180', '30000/1001', 3), ...SINE(3), ...X264(45), '-c:a', 'aac', '-b:a', '96k', '-ac', '2'] },
  /** 6 s at 23.976 fps, video only. */
  'v-23976': { ext: 'mp4', args: [...TESTSRC('320x180', '24000/1001', 6), ...X264(48)] },
  /** 4 s whose frame rate changes from 30 to 15 fps halfway: variable frame rate. */
  vfr: {
    ext: 'mp4',
    args: [...TESTSRC('320x180', '30', 4), '-vf', "select='lt(t,2)+gte(t,2)*not(mod(n,2))',setpts=N/FRAME_RATE/TB*0+PTS", '-fps_mode', 'vfr', ...X264(60)],
  },
  /** 4 s at 30 fps whose frame at 0.967 s is held until 2.5 s (a paused screen recording; issue 17's command). */
  hold: { ext: 'mp4', args: [...TESTSRC('320x180', '30', 4), '-vf', "select='not(between(t,1.0,2.4999))'", '-fps_mode', 'vfr', ...X264(60)] },
  /** 3 s: 30 fps, a 233 ms hold from 0.8 s, then 15 fps from 1.5 s (a variable-rate capture). */
  'rate-change': {
    ext: 'mp4',
    args: [...TESTSRC('320x180', '30', 3), '-vf', "select='not(between(t,0.83,1.0499))*(lt(t,1.5)+not(mod(n,2)))'", '-fps_mode', 'vfr', ...X264(45)],
  },
  /** 5 s of 440 Hz AAC, audio only. */
  'a-only': { ext: 'm4a', args: [...SINE(5), '-c:a', 'aac', '-b:a', '96k', '-ac', '2'] },
  /** 4 s VP9 + Opus in WebM. */
  webm: {
    ext: 'webm',
    args: [
      ...TESTSRC('320x180', '30', 4),
      ...SINE(4),
      '-c:v',
      'libvpx-vp9',
      '-deadline',
      'realtime',
      '-cpu-used',
      '8',
      '-b:v',
      '300k',
      '-c:a',
      'libopus',
      '-b:a',
      '64k',
    ],
  },
  /** 60 s of tiny video, for runs of many jobs through one tab. */
  'long-tiny': { ext: 'mp4', args: [...TESTSRC('128x72', '30', 60), ...X264(150)] },
  /** Benchmarks: 20 s of 720p30 with a tone (key frame every 2 s), the source for throughput and compression figures. */
  'bench-720p': { ext: 'mp4', args: [...TESTSRC('1280x720', '30', 20), ...SINE(20), ...X264(60), '-crf', '18', '-c:a', 'aac', '-b:a', '128k', '-ac', '2'] },
  /** 4 s H.264 + AAC in Matroska. */
  mkv: { ext: 'mkv', args: [...TESTSRC('320x180', '30', 4), ...SINE(4), ...X264(60), '-c:a', 'aac', '-b:a', '96k'] },
  /** 3 s H.264 + AAC in a QuickTime MOV (what phones upload). */
  mov: { ext: 'mov', args: [...TESTSRC('320x180', '30', 3), ...SINE(3), ...X264(60), '-c:a', 'aac', '-b:a', '96k'] },
} as const;

type Recipe = keyof typeof RECIPES;
/** A 2 s 320x180 picture whose display matrix turns it by this many degrees (ffprobe's `rotation`, anticlockwise), as phones write. */
export type RotatedFixture = 'rot90' | 'rot180' | 'rot270';
export type FixtureName = Recipe | RotatedFixture | 'not-media' | 'truncated' | 'truncated-faststart' | 'empty';

/**
 * The display matrix is written by stream copy: `-display_rotation` (ffmpeg 6+) where there is one, else the
 * `rotate` tag, which ffmpeg 5 turns into the matrix on stream copy. Checked with ffprobe, since either can be
 * ignored silently.
 */
async function makeRotated(name: RotatedFixture, out: string): Promise<void> {
  const deg = Number(name.slice(3));
  const plain = `${out}.plain.mp4`;
  try {
    await run('ffmpeg', ['-v', 'error', '-y', ...TESTSRC('320x180', '30', 2), ...X264(30), plain]);
    try {
      await run('ffmpeg', ['-v', 'error', '-y', '-display_rotation', String(deg), '-i', plain, '-c', 'copy', '-f', 'mp4', out]);
    } catch {
      await run('ffmpeg', ['-v', 'error', '-y', '-i', plain, '-c', 'copy', '-metadata:s:v:0', `rotate=${deg}`, '-f', 'mp4', out]);
    }
  } finally {
    fs.rmSync(plain, { force: true });
  }
  const j = await ffprobeJson(out, ['-select_streams', 'v:0', '-show_entries', 'stream_side_data=rotation']);
  const got = Number(j.streams?.[0]?.side_data_list?.[0]?.rotation);
  if ((((got - deg) % 360) + 360) % 360 !== 0) throw new Error(`${name}: ffmpeg wrote a display rotation of ${got}, not ${deg}`);
}

async function make(name: FixtureName, out: string): Promise<void> {
  if (name === 'not-media') {
    fs.writeFileSync(out, randomBytes(64 * 1024));
  } else if (name === 'empty') {
    fs.writeFileSync(out, '');
  } else if (name === 'rot90' || name === 'rot180' || name === 'rot270') {
    await makeRotated(name, out);
  } else if (name === 'truncated') {
    // moov at the end (ffmpeg's default): cutting the file loses the index, so nothing can be played.
    const whole = await fixture('av-2997');
    const bytes = fs.readFileSync(whole);
    fs.writeFileSync(out, bytes.subarray(0, Math.floor(bytes.length * 0.4)));
  } else if (name === 'truncated-faststart') {
    // moov first: the index survives but the media data it points to is cut off.
    const whole = await fixture('av-2997');
    const fast = `${out}.whole.mp4`;
    await run('ffmpeg', ['-v', 'error', '-y', '-i', whole, '-c', 'copy', '-movflags', '+faststart', fast]);
    const bytes = fs.readFileSync(fast);
    fs.rmSync(fast);
    fs.writeFileSync(out, bytes.subarray(0, Math.floor(bytes.length * 0.4)));
  } else {
    const r = RECIPES[name];
    await run('ffmpeg', ['-v', 'error', '-y', ...r.args, '-f', r.ext === 'm4a' ? 'mp4' : r.ext === 'mkv' ? 'matroska' : r.ext, out]);
  }
}

const pending = new Map<string, Promise<string>>();

/** The path of a fixture, made on first use. */
export function fixture(name: FixtureName): Promise<string> {
  const ext = name in RECIPES ? RECIPES[name as Recipe].ext : name.startsWith('rot') ? 'mp4' : 'bin';
  const file = path.join(FIXTURE_DIR, `${name}.${ext}`);
  let p = pending.get(file);
  if (!p) {
    p = (async () => {
      if (fs.existsSync(file)) return file;
      fs.mkdirSync(FIXTURE_DIR, { recursive: true });
      const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}.${ext}`;
      try {
        await make(name, tmp);
        fs.renameSync(tmp, file);
      } finally {
        fs.rmSync(tmp, { force: true });
      }
      return file;
    })();
    pending.set(file, p);
  }
  return p;
}

/** Runs ffprobe with JSON output. */
export async function ffprobeJson(file: string, args: string[]): Promise<any> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-of', 'json', ...args, file], { maxBuffer: 64 * 2 ** 20 });
  return JSON.parse(stdout);
}

/** Decoded video frames in a file, counted by ffprobe. */
export async function countFrames(file: string): Promise<number> {
  const j = await ffprobeJson(file, ['-select_streams', 'v:0', '-count_frames', '-show_entries', 'stream=nb_read_frames']);
  return Number(j.streams[0].nb_read_frames);
}
