/**
 * ffmpeg.wasm behind a watchdog. The FFmpeg class runs the core in its own
 * worker; the core's .js and .wasm are bundled assets of our own origin.
 *
 * - An exec that prints nothing (no log, no progress) for `watchdogMs` is
 *   killed: the worker is terminated and a fresh core is loaded next time.
 * - The core is recycled every `recycleAfterExecs` execs, because a loaded
 *   core crashes after roughly 45-100 execs (DESIGN.md).
 * - The multi-thread core (`core: 'multi'`) is used only where the page is
 *   cross-origin isolated (it needs SharedArrayBuffer), and jobs must pass
 *   `-threads 2` (`threads`). On its first crash or watchdog kill the engine
 *   falls back to the single-thread core for good.
 */
import { FFmpeg } from '@ffmpeg/ffmpeg';
import coreURL from '@ffmpeg/core?url';
import wasmURL from '@ffmpeg/core/wasm?url';
import mtCoreURL from '@ffmpeg/core-mt?url';
import mtWasmURL from '@ffmpeg/core-mt/wasm?url';
import mtWorkerURL from '@ffmpeg/core-mt/worker?url';

/** Which ffmpeg.wasm build runs the execs. */
export type FfmpegCoreKind = 'single' | 'multi';

/**
 * The ffmpeg.wasm build, for the `engine` field of shard-ready ("name@build"):
 * the core package's version and flavour (st: single-thread). Keep it in step
 * with package.json (a unit test checks).
 */
export const FFMPEG_CORE_BUILD = 'core-0.12.10-st';
/**
 * The multi-thread build (mt). Its libx264 runs with `-threads 2` and makes
 * other bytes than the single-thread core, so its shards must carry their own
 * build: cross-checks compare hashes only between equal engine strings.
 */
export const FFMPEG_CORE_MT_BUILD = 'core-mt-0.12.10-mt';

export class WatchdogError extends Error {
  override name = 'WatchdogError';
}

export interface ExecResult {
  /** Output files by name. */
  files: Map<string, Uint8Array>;
  /** Wall time of the exec alone, ms. */
  execMs: number;
  /** Last lines ffmpeg printed, for error messages. */
  log: string[];
  /** The core that ran it (the multi-thread one may have fallen back before). */
  core: FfmpegCoreKind;
}

export interface EngineStats {
  loads: number;
  execs: number;
  execsOnThisCore: number;
  watchdogKills: number;
  /** Times the multi-thread core failed and the engine went back to the single-thread one. */
  multiFallbacks: number;
}

export class FfmpegEngine {
  private ff: FFmpeg | undefined;
  private loading: Promise<FFmpeg> | undefined;
  private readonly logTail: string[] = [];
  private lastActivity = 0;
  readonly stats: EngineStats = { loads: 0, execs: 0, execsOnThisCore: 0, watchdogKills: 0, multiFallbacks: 0 };
  /** The core in use (or to be loaded next). */
  kind: FfmpegCoreKind;
  /** Called with 0..1 while an exec runs (ffmpeg's own progress estimate). */
  onProgress: ((p: number) => void) | undefined;
  /** Called with every log line (frame=... lines carry fps). */
  onLog: ((line: string) => void) | undefined;

  constructor(private readonly opts: { watchdogMs: number; recycleAfterExecs: number; core?: FfmpegCoreKind }) {
    this.kind = opts.core === 'multi' && globalThis.crossOriginIsolated === true ? 'multi' : 'single';
  }

  /** The `-threads` value jobs must pass: the multi-thread core's libx264 crashes without an explicit 2 (DESIGN.md). */
  get threads(): number | undefined {
    return this.kind === 'multi' ? 2 : undefined;
  }

  /** Drops the multi-thread core after a failure; the next exec loads the single-thread one. */
  private fallBack(): void {
    if (this.kind !== 'multi') return;
    this.kind = 'single';
    this.stats.multiFallbacks++;
  }

  private async core(): Promise<FFmpeg> {
    if (this.ff && this.stats.execsOnThisCore >= this.opts.recycleAfterExecs) this.terminate();
    if (this.ff) return this.ff;
    if (!this.loading) {
      this.loading = (async () => {
        const ff = new FFmpeg();
        ff.on('log', ({ message }) => {
          this.lastActivity = performance.now();
          this.logTail.push(message);
          if (this.logTail.length > 40) this.logTail.shift();
          this.onLog?.(message);
        });
        ff.on('progress', ({ progress }) => {
          this.lastActivity = performance.now();
          if (progress >= 0 && progress <= 1) this.onProgress?.(progress);
        });
        if (this.kind === 'multi') {
          try {
            // A core that cannot start its threads may hang rather than fail: bound the wait.
            let timer: ReturnType<typeof setTimeout> | undefined;
            await Promise.race([
              ff.load({ coreURL: mtCoreURL, wasmURL: mtWasmURL, workerURL: mtWorkerURL }),
              new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('multi-thread core load timed out')), this.opts.watchdogMs))),
            ]).finally(() => clearTimeout(timer));
          } catch {
            ff.terminate();
            this.fallBack();
            await ff.load({ coreURL, wasmURL });
          }
        } else {
          await ff.load({ coreURL, wasmURL });
        }
        this.stats.loads++;
        this.stats.execsOnThisCore = 0;
        this.ff = ff;
        return ff;
      })().finally(() => {
        this.loading = undefined;
      });
    }
    return this.loading;
  }

  /** Loads the core now (the join benchmark does this, and warms it up). */
  async load(): Promise<void> {
    await this.core();
  }

  terminate(): void {
    this.ff?.terminate();
    this.ff = undefined;
  }

  /**
   * Writes `inputs` into a fresh directory, runs ffmpeg with the arguments
   * `args(dir)` gives, and reads back every file it wrote there (other than
   * the inputs). The core's file system is cleaned afterwards.
   *
   * `crashMultiAfterFrames` is a test hook: on the multi-thread core, the
   * exec is killed once ffmpeg reports that many frames, as a crash would.
   * Throws WatchdogError on a stall, Error on a crash or a non-zero exit.
   */
  exec(args: (dir: string) => string[], inputs: Record<string, Uint8Array>, opts: { crashMultiAfterFrames?: number } = {}): Promise<ExecResult> {
    // Jobs and verifications share the core: one exec at a time (the watchdog and log tail are per exec).
    const run = this.serial.then(() => this.execNow(args, inputs, opts));
    this.serial = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private serial: Promise<void> = Promise.resolve();

  private async execNow(args: (dir: string) => string[], inputs: Record<string, Uint8Array>, opts: { crashMultiAfterFrames?: number }): Promise<ExecResult> {
    const ff = await this.core();
    const core = this.kind;
    this.logTail.length = 0;
    const workDir = `/job${this.stats.execs}`;
    await ff.createDir(workDir);
    const cleanup = async () => {
      try {
        for (const n of await ff.listDir(workDir)) if (!n.isDir) await ff.deleteFile(`${workDir}/${n.name}`);
        await ff.deleteDir(workDir);
      } catch {
        /* the core may be gone (watchdog); a new one starts clean */
      }
    };
    try {
      for (const [name, data] of Object.entries(inputs)) await ff.writeFile(`${workDir}/${name}`, data);
      this.lastActivity = performance.now();
      let timedOut = false;
      const watchdog = setInterval(
        () => {
          if (performance.now() - this.lastActivity > this.opts.watchdogMs) {
            timedOut = true;
            this.stats.watchdogKills++;
            this.terminate(); // rejects the pending exec
          }
        },
        Math.min(1000, this.opts.watchdogMs / 4),
      );
      const crashAt = core === 'multi' ? opts.crashMultiAfterFrames : undefined;
      const onCrashHook = ({ message }: { message: string }) => {
        const m = /frame=\s*(\d+)/.exec(message);
        if (crashAt !== undefined && m && Number(m[1]) >= crashAt && this.ff === ff) this.terminate();
      };
      if (crashAt !== undefined) ff.on('log', onCrashHook);
      const t0 = performance.now();
      let code: number;
      try {
        code = await ff.exec(args(workDir));
      } catch (e) {
        this.fallBack();
        if (timedOut) throw new WatchdogError(`ffmpeg made no progress for ${this.opts.watchdogMs} ms and was killed`);
        // A crashed core ("memory access out of bounds") is useless: start over next time.
        this.terminate();
        throw new Error(`ffmpeg crashed (${String((e as Error)?.message ?? e)}); its last lines: ${this.logTail.slice(-4).join(' | ')}`);
      } finally {
        clearInterval(watchdog);
        if (crashAt !== undefined) ff.off('log', onCrashHook);
      }
      const execMs = performance.now() - t0;
      this.stats.execs++;
      this.stats.execsOnThisCore++;
      if (code !== 0) throw new Error(`ffmpeg exited with ${code}: ${this.logTail.slice(-6).join(' | ')}`);
      const files = new Map<string, Uint8Array>();
      for (const n of await ff.listDir(workDir)) {
        if (n.isDir || n.name in inputs) continue;
        const data = await ff.readFile(`${workDir}/${n.name}`);
        if (data instanceof Uint8Array) files.set(n.name, data);
      }
      return { files, execMs, log: [...this.logTail], core };
    } finally {
      if (this.ff === ff) await cleanup();
    }
  }
}
