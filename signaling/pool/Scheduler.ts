/**
 * The scheduling policy, pure: given the encoders' free slots and the
 * contents' pending shards, which encoder gets which run of shards, and
 * whether a background job must give way to live work. No I/O, no clock:
 * every time-dependent fact (playheads, predicted demand) comes in the input.
 *
 * Order of work: the best-scoring encoders first, the most urgent work first
 * (live near a viewer's playhead, then content starts, then background
 * pre-encoding, which pauses while live work waits). The candidate list is
 * built once per pass (with hundreds of encoders and viewers a per-encoder
 * scan was the server's main cost); after each assignment only that content
 * and rendition's candidates are rebuilt.
 */
import type { Capabilities } from '../../src/shared/protocol.ts';
import { isVideoRendition } from '../../src/shared/shardMap.ts';
import { variantKeyString, type VariantKey } from '../../src/shared/variantKey.ts';
import type { Content } from '../ContentStore.ts';
import type { JobPlanOptions } from '../jobs.ts';
import { runIndices } from './JobBuilder.ts';
import type { JobClass } from './types.ts';

export interface SchedulerConfig extends JobPlanOptions {
  /** Seconds after a playhead within which pending work is live. */
  liveWindowSeconds: number;
  /** A content's first seconds: its pending shards there are 'start' work. */
  startSeconds: number;
}

export interface PlanInput {
  /** Published contents, in publication order. */
  contents: readonly Content[];
  /** Active viewers' playhead times (s), per content, one per distinct shard. */
  playheads: ReadonlyMap<string, readonly number[]>;
  /** Pending and not in flight. */
  isPending(k: VariantKey): boolean;
  /** Failed or was re-queued before. */
  isRetry(k: VariantKey): boolean;
  /** Predicted demand (req/s) for a content at `start` seconds. */
  predicted(contentId: string, start: number): number;
  config: SchedulerConfig;
}

export interface Candidate {
  content: Content;
  /** Publication order of the content. */
  order: number;
  rendition: string;
  codec: string;
  index: number;
  klass: JobClass;
  /** Lower is sooner: seconds to a playhead (live), start time (start), minus predicted demand (background). */
  urgency: number;
  retry: boolean;
}

export interface EncoderSlots {
  id: string;
  /** Jobs it may still take. */
  free: number;
  /** Health score, higher first. */
  score: number;
  /** Jobs it runs now. */
  load: number;
  joinedAt: number;
  engines: Capabilities['engines'];
}

export interface RunningBackground {
  jobId: string;
  peerId: string;
  progress: number;
  assignedAt: number;
  engines: Capabilities['engines'];
}

export interface Assignment {
  peerId: string;
  content: Content;
  rendition: string;
  indices: number[];
  klass: JobClass;
}

export interface Plan {
  assignments: Assignment[];
  /** A background job to cancel so its encoder takes `pick` (live work nobody free can take). */
  preempt?: { jobId: string; peerId: string; pick: Candidate };
}

const CLASS_RANK: Record<JobClass, number> = { live: 0, start: 1, background: 2 };

/** Live before start before background; within a class re-queued work first, then urgency, content order, position. */
export function compareCandidates(a: Candidate, b: Candidate): number {
  return CLASS_RANK[a.klass] - CLASS_RANK[b.klass] || Number(b.retry) - Number(a.retry) || a.urgency - b.urgency || a.order - b.order || a.index - b.index;
}

export function canEncode(engines: Capabilities['engines'], codec: string): boolean {
  return engines.some((e) => e.codecs.includes(codec));
}

/** Every content and rendition's candidates, most urgent first. `taken`: variant keys already given out in this pass. */
export function candidates(input: PlanInput, taken: ReadonlySet<string> = new Set()): Candidate[] {
  const out: Candidate[] = [];
  input.contents.forEach((content, order) => {
    for (const r of content.map.renditions) out.push(...candidatesOf(input, content, order, r.id, taken));
  });
  return out.sort(compareCandidates);
}

/**
 * One content and rendition's candidates: the first pending shard at or
 * after each viewer's playhead (live: the nearer, the sooner), and the first
 * pending shard at all, re-queued and fresh apart (start, when it is in the
 * content's first seconds; else background, by predicted demand).
 */
function candidatesOf(input: PlanInput, content: Content, order: number, renditionId: string, taken: ReadonlySet<string>): Candidate[] {
  const map = content.map;
  const r = map.renditions.find((x) => x.id === renditionId)!;
  const codec = isVideoRendition(r) ? r.video.codec : r.audio.codec;
  const keyOf = (i: number): VariantKey => ({ contentId: map.contentId, rendition: renditionId, index: i });
  const pendingAt = (i: number) => input.isPending(keyOf(i)) && (taken.size === 0 || !taken.has(variantKeyString(keyOf(i))));
  const retryOf = (i: number) => input.isRetry(keyOf(i));
  const out: Candidate[] = [];
  const base = { content, order, rendition: renditionId, codec };
  for (const t of input.playheads.get(map.contentId) ?? []) {
    for (let i = 0; i < map.shards.length; i++) {
      const s = map.shards[i]!;
      if (s.start + s.duration <= t) continue;
      if (s.start > t + input.config.liveWindowSeconds) break;
      if (!pendingAt(i)) continue;
      if (!out.some((c) => c.index === i)) out.push({ ...base, index: i, klass: 'live', urgency: s.start - t, retry: retryOf(i) });
      break;
    }
  }
  for (const retry of [true, false]) {
    const first = map.shards.findIndex((_s, i) => pendingAt(i) && retryOf(i) === retry);
    if (first < 0) continue;
    const s = map.shards[first]!;
    if (out.some((c) => c.index === first)) continue;
    if (s.start < input.config.startSeconds) out.push({ ...base, index: first, klass: 'start', urgency: s.start, retry });
    else out.push({ ...base, index: first, klass: 'background', urgency: -input.predicted(map.contentId, s.start), retry });
  }
  return out;
}

/** After an assignment: that content and rendition's candidates again, in place. */
function refresh(input: PlanInput, list: Candidate[], pick: Candidate, taken: ReadonlySet<string>): void {
  for (let i = list.length - 1; i >= 0; i--) if (list[i]!.content === pick.content && list[i]!.rendition === pick.rendition) list.splice(i, 1);
  for (const c of candidatesOf(input, pick.content, pick.order, pick.rendition, taken)) {
    const at = list.findIndex((x) => compareCandidates(c, x) < 0);
    list.splice(at < 0 ? list.length : at, 0, c);
  }
}

/**
 * Plans one pass: `list` is candidates(input) (it is not changed);
 * `encoders` those with free slots; `running` the background jobs that may
 * give way. The runs given out are as JobBuilder.runIndices would pick them
 * over the pending shards minus those given out earlier in the pass.
 */
export function plan(input: PlanInput, list0: readonly Candidate[], encoders: readonly EncoderSlots[], running: readonly RunningBackground[]): Plan {
  const list = [...list0];
  const taken = new Set<string>();
  const assignments: Assignment[] = [];
  // Fast, reliable encoders take the most urgent jobs; ties go to the least loaded.
  const order = [...encoders].sort((a, b) => b.score - a.score || a.load - b.load || a.joinedAt - b.joinedAt);
  for (const e of order) {
    let free = e.free;
    while (free > 0 && list.length > 0) {
      const pick = list.find((c) => canEncode(e.engines, c.codec));
      if (!pick) break;
      // Background work pauses while live work waits.
      if (pick.klass === 'background' && list.some((c) => c.klass === 'live')) break;
      const keyOf = (i: number): VariantKey => ({ contentId: pick.content.map.contentId, rendition: pick.rendition, index: i });
      const indices = runIndices(
        pick.content,
        pick.rendition,
        pick.index,
        (i) => input.isPending(keyOf(i)) && !taken.has(variantKeyString(keyOf(i))),
        (i) => input.isRetry(keyOf(i)),
        input.config,
      );
      for (const i of indices) taken.add(variantKeyString(keyOf(i)));
      assignments.push({ peerId: e.id, content: pick.content, rendition: pick.rendition, indices, klass: pick.klass });
      free--;
      refresh(input, list, pick, taken);
    }
  }
  return { assignments, ...preemption(list, running) };
}

/**
 * When live work waits and every able encoder is busy, one background job
 * gives way (background work is short, so little is lost): the one with the
 * least work done (least progress; among jobs too short to report any, the newest).
 */
function preemption(list: readonly Candidate[], running: readonly RunningBackground[]): Pick<Plan, 'preempt'> {
  const live = list.filter((c) => c.klass === 'live');
  if (live.length === 0) return {};
  const order = [...running].sort((a, b) => a.progress - b.progress || b.assignedAt - a.assignedAt);
  for (const j of order) {
    const pick = live.find((c) => canEncode(j.engines, c.codec));
    if (pick) return { preempt: { jobId: j.jobId, peerId: j.peerId, pick } };
  }
  return {};
}

/** Active viewers' playhead times (s), per content, one per distinct shard. */
export function playheadTimes(active: Iterable<{ contentId: string; index: number }>, contentOf: (id: string) => Content | undefined): Map<string, number[]> {
  const out = new Map<string, Set<number>>();
  for (const p of active) {
    let set = out.get(p.contentId);
    if (!set) out.set(p.contentId, (set = new Set()));
    set.add(p.index);
  }
  const times = new Map<string, number[]>();
  for (const [id, set] of out) {
    const shards = contentOf(id)?.map.shards;
    if (shards)
      times.set(
        id,
        [...set].flatMap((i) => (shards[i] ? [shards[i].start] : [])),
      );
  }
  return times;
}

/**
 * The engine that finishes a job of `codec` soonest: the fastest of the
 * encoder's engines that make the codec, by the join benchmark (every engine
 * benchmarks the same 320x180 encode, so the speeds compare; WebCodecs H.264
 * ran 4-15x ffmpeg.wasm here). Each engine's rate control is set to reach
 * the rendition's quality target (src/encoder/config.ts), so speed decides.
 */
export function engineFor(engines: Capabilities['engines'], codec: string): string | undefined {
  let best: { name: string; speed: number } | undefined;
  for (const e of engines) {
    if (!e.codecs.includes(codec)) continue;
    const speed = e.speed ?? 0;
    if (!best || speed > best.speed) best = { name: e.name, speed };
  }
  return best?.name;
}
