/**
 * The engine-claim policy: which engine strings ("name@build") a shard-ready
 * may name for a job. The engine decides how a shard can be checked (hashes
 * are compared only between equal engine strings, and only for engines known
 * to be deterministic), so an encoder that could name any engine, or none,
 * could put its shards beyond every check. A claim must therefore name the
 * engine the pool assigned in the job, with the build the encoder declared
 * for it in its capabilities (`engines[].build`, absent: the name alone);
 * anything else is refused.
 */
import type { Capabilities, Job } from '../../src/shared/protocol.ts';

/**
 * The engine every tab has and falls back to when its job's engine fails mid-job
 * (WebCodecs H.264 to ffmpeg.wasm, src/encoder/JobRunner.ts): also accepted for
 * a job that named another engine, with its own declared build.
 */
export const FALLBACK_ENGINE = 'ffmpeg-wasm';

type Engine = Capabilities['engines'][number];

/** The string a shard made by `e` carries in shard-ready: "name@build", or the name when no build was declared. */
export function engineString(e: Engine): string {
  return e.build ? `${e.name}@${e.build}` : e.name;
}

/** The engine strings a shard-ready for `job` may name, given the encoder's current capabilities. */
export function allowedEngines(job: Job, capabilities: Capabilities | undefined): string[] {
  const codec = job.video?.codec ?? job.audio?.codec ?? '';
  const names = job.engine ? [job.engine, ...(job.engine !== FALLBACK_ENGINE && codec === 'h264' ? [FALLBACK_ENGINE] : [])] : [];
  return (capabilities?.engines ?? []).filter((e) => names.includes(e.name) && e.codecs.includes(codec)).map(engineString);
}

/**
 * Why a shard-ready's `engine` is refused for `job`, or undefined when it is the
 * assigned engine with its declared build (or the fallback engine's).
 */
export function engineClaimProblem(job: Job, capabilities: Capabilities | undefined, claimed: string | undefined): string | undefined {
  const allowed = allowedEngines(job, capabilities);
  if (claimed === undefined) return `shard-ready must name the engine that made the shard (${allowed.join(' or ') || 'none assigned'})`;
  if (!allowed.includes(claimed)) {
    return `engine ${JSON.stringify(claimed)} is not the one job ${job.id} assigned with the build this encoder declared (${allowed.join(' or ') || 'none'})`;
  }
  return undefined;
}
