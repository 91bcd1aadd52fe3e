/**
 * Mezzanine jobs (server side: signaling/Mezzanine.ts): while idle, the tab
 * asks the server for a source only ffmpeg.wasm decodes (Ogg Theora, MPEG-2
 * video, ...), fetches it whole, transcodes it into an MP4 the server reads
 * and uploads it with the job's token. The server publishes it only when a
 * second volunteer with the same core build uploads the same bytes, so the
 * output must be deterministic: the single-thread core, bit-exact flags, no
 * metadata; the engine build goes with the upload so that only equal builds
 * are compared.
 */
import { apiUrl } from '../shared/api.ts';
import type { PoolClient } from '../net/PoolClient.ts';
import { readInit } from '../net/PoolClient.ts';
import { FFMPEG_CORE_BUILD, FFMPEG_CORE_MT_BUILD, type FfmpegEngine } from './FfmpegEngine.ts';

/** A claimed job, as POST /api/mezzanine/claim answers. */
interface ClaimedJob {
  contentId: string;
  source: string;
  upload: string;
}

/**
 * ffmpeg arguments of a mezzanine: H.264 at high quality (CRF 16: the shards are encoded again from it) with a key
 * frame every second (shards start on key frames), AAC at 192 kbit/s, the source's frame times kept (VFR stays VFR).
 */
export function mezzanineArgs(dir: string): string[] {
  return [
    ...['-i', `${dir}/source`, '-map', '0:v:0?', '-map', '0:a:0?', '-map_metadata', '-1', '-fflags', '+bitexact'],
    ...[
      '-c:v',
      'libx264',
      '-preset',
      'veryfast',
      '-crf',
      '16',
      '-pix_fmt',
      'yuv420p',
      '-force_key_frames',
      'expr:gte(t,n_forced*1)',
      '-fps_mode',
      'passthrough',
    ],
    ...['-flags:v', '+bitexact', '-c:a', 'aac', '-b:a', '192k', '-flags:a', '+bitexact', '-movflags', '+faststart', `${dir}/mezzanine.mp4`],
  ];
}

export class MezzanineJobs {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    private readonly engine: FfmpegEngine,
    private readonly pool: PoolClient,
    private readonly isBusy: () => boolean,
    private readonly log: (line: string) => void,
    private readonly pollMs: number,
    private readonly base: string,
  ) {
    if (pollMs > 0) this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (!this.stopped) this.timer = setTimeout(() => void this.poll().finally(() => this.schedule()), this.pollMs);
  }

  /** One claim and, when the server has a job, the job. Never throws: a failed job is logged and the token expires. */
  private async poll(): Promise<void> {
    const me = this.pool.credentials;
    if (!me || this.isBusy()) return;
    try {
      const init = readInit();
      const res = await fetch(new URL(apiUrl.mezzanineClaim(), this.base), {
        method: 'POST',
        body: JSON.stringify({ peerId: me.peerId, resume: me.resume }),
        headers: { 'Content-Type': 'application/json', ...(init.headers as Record<string, string> | undefined) },
      });
      if (res.status === 204) return;
      if (!res.ok) throw new Error(`claim refused: ${(await res.text()).slice(0, 200)}`);
      await this.run((await res.json()) as ClaimedJob);
    } catch (e) {
      this.log(`mezzanine: ${(e as Error).message}`);
    }
  }

  private async run(job: ClaimedJob): Promise<void> {
    this.log(`mezzanine of ${job.contentId}: fetching the source`);
    const src = await fetch(new URL(job.source, this.base));
    if (!src.ok) throw new Error(`source refused: ${(await src.text()).slice(0, 200)}`);
    const r = await this.engine.exec(mezzanineArgs, { source: new Uint8Array(await src.arrayBuffer()) });
    const out = r.files.get('mezzanine.mp4');
    if (!out) throw new Error(`ffmpeg made no mezzanine: ${r.log.slice(-3).join(' / ')}`);
    const build = r.core === 'single' ? FFMPEG_CORE_BUILD : FFMPEG_CORE_MT_BUILD;
    const up = await fetch(new URL(job.upload, this.base), {
      method: 'PUT',
      body: out as Uint8Array<ArrayBuffer>,
      headers: { 'Content-Type': 'video/mp4', 'X-Engine': `ffmpeg-wasm@${build}` },
    });
    const text = (await up.text()).slice(0, 300);
    if (!up.ok) throw new Error(`upload refused: ${text}`);
    this.log(`mezzanine of ${job.contentId} (${out.byteLength} bytes, ${Math.round(r.execMs)} ms): ${text}`);
  }
}
