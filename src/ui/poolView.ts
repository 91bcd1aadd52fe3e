/**
 * The pure helpers the /pool page uses to show what `GET /api/pool` answers
 * (its types live in src/shared/api.ts): readable event lines, shard keys,
 * and the heat map's layout.
 */
import { parseVariantKey } from '../shared/variantKey.ts';

import type { PoolEvent } from '../shared/api.ts';
export type { ContentHeat, EncoderHealth, JobClass, JobView, PeerView, PoolEvent, PoolSnapshot, RenditionHeat } from '../shared/api.ts';

// ------------------------------------------------------------------ shards

export type CellStatus = 'ready' | 'encoding' | 'pending' | 'failed' | 'none';

const STATUS: Record<string, CellStatus> = { r: 'ready', e: 'encoding', p: 'pending', f: 'failed' };

export function cellStatus(ch: string | undefined): CellStatus {
  return (ch && STATUS[ch]) || 'none';
}

/** "content/rendition/index" (the pool's key string) back to its parts. */
export function parseKey(key: unknown): { contentId: string; rendition: string; index: number } | undefined {
  if (key && typeof key === 'object') {
    const k = key as { contentId?: unknown; rendition?: unknown; index?: unknown };
    if (typeof k.contentId === 'string' && typeof k.rendition === 'string' && typeof k.index === 'number')
      return { contentId: k.contentId, rendition: k.rendition, index: k.index };
    return undefined;
  }
  return typeof key === 'string' ? parseVariantKey(key) : undefined;
}

/** "shard 12 180p of clip.mp4" (the content's name when known). */
export function shardText(key: unknown, names: ReadonlyMap<string, string>): string {
  const k = parseKey(key);
  if (!k) return `shard ${String(key)}`;
  return `shard ${k.index} ${k.rendition} of ${names.get(k.contentId) ?? k.contentId}`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** One cell's tooltip: "shard 12 180p: ready, 2 holders, cached, 3.1 req/s". */
export function cellTitle(index: number, rendition: string, status: CellStatus, holders: number, cached: boolean, demand: number): string {
  const parts = [status === 'none' ? 'not in this rendition' : status === 'pending' ? 'pending (not encoded yet)' : status, plural(holders, 'holder')];
  if (cached) parts.push('cached');
  parts.push(`${demand.toFixed(1)} req/s`);
  return `shard ${index} ${rendition}: ${parts.join(', ')}`;
}

// ------------------------------------------------------------------ heat-map layout

export interface Band {
  start: number;
  /** Exclusive. */
  end: number;
}

/**
 * Cuts `shards` columns into bands (rows of the heat map) of at most as many
 * columns as fit in `width` pixels at `minPitch` pixels a column; bands of
 * more than 10 columns are a multiple of 10, so columns line up with round
 * shard numbers.
 */
export function bandLayout(shards: number, width: number, minPitch = 7): { columns: number; bands: Band[] } {
  if (shards <= 0) return { columns: 0, bands: [] };
  const fit = Math.max(10, Math.floor(width / minPitch));
  const columns = shards <= fit ? shards : Math.max(10, Math.floor(fit / 10) * 10);
  const bands: Band[] = [];
  for (let s = 0; s < shards; s += columns) bands.push({ start: s, end: Math.min(shards, s + columns) });
  return { columns, bands };
}

/**
 * An SVG path (viewBox 0 0 columns 1) of one bar per shard. Heights are on a
 * square-root scale of value / max, so a lone viewer's trail stays visible
 * next to a hot spot.
 */
export function barsPath(values: readonly number[], start: number, end: number, max: number): string {
  let d = '';
  for (let i = start; i < end; i++) {
    const v = values[i] ?? 0;
    if (!(v > 0) || !(max > 0)) continue;
    const h = Math.max(0.06, Math.min(1, Math.sqrt(v / max)));
    const x = i - start;
    d += `M${x + 0.1} 1V${(1 - h).toFixed(3)}H${x + 0.9}V1Z`;
  }
  return d;
}

// ------------------------------------------------------------------ events

export type Severity = 'bad' | 'warn' | 'info' | 'ok' | 'routine';

export const SEVERITY: Record<string, Severity> = {
  'encoder-quarantined': 'bad',
  'encoder-convicted': 'bad',
  'shard-revoked': 'warn',
  'check-planned': 'routine',
  'check-passed': 'ok',
  'shard-failed': 'bad',
  'shard-rejected': 'bad',
  'peer-reported': 'warn',
  'peer-lost': 'warn',
  'job-requeued': 'warn',
  'shard-orphaned': 'warn',
  'job-preempted': 'warn',
  replicate: 'info',
  'replica-stored': 'info',
  'replica-released': 'info',
  'peer-joined': 'ok',
  'content-complete': 'ok',
  'job-assigned': 'routine',
  'job-done': 'routine',
};

/** A short label for an event's type. */
export const EVENT_LABEL: Record<string, string> = {
  'encoder-quarantined': 'quarantine',
  'encoder-convicted': 'caught',
  'shard-revoked': 'revoked',
  'check-planned': 'check',
  'check-passed': 'verified',
  'shard-failed': 'shard failed',
  'shard-rejected': 'rejected',
  'peer-reported': 'reported',
  'peer-lost': 'peer lost',
  'job-requeued': 're-queued',
  'shard-orphaned': 'orphaned',
  'job-preempted': 'preempted',
  replicate: 'replicate',
  'replica-stored': 'replica',
  'replica-released': 'released',
  'peer-joined': 'joined',
  'content-complete': 'complete',
  'job-assigned': 'job',
  'job-done': 'job done',
};

const str = (v: unknown, fallback = '?'): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : fallback);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const shortJob = (id: unknown) => `job ${str(id).slice(0, 6)}`;

function durationText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
}

/** One readable line for a pool event. `names` maps content ids to names. */
export function eventText(ev: PoolEvent, names: ReadonlyMap<string, string>): string {
  const d = (ev.detail && typeof ev.detail === 'object' ? ev.detail : {}) as Record<string, unknown>;
  const content = (id: unknown) => names.get(str(id)) ?? str(id);
  const shard = (k: unknown) => shardText(k, names);
  switch (ev.type) {
    case 'peer-joined':
      return `${str(d.role, 'peer')} ${str(d.peerId)} joined`;
    case 'peer-lost': {
      const n = num(d.requeued);
      return `${str(d.role, 'peer')} ${str(d.peerId)} lost (${str(d.reason, 'unknown reason')})${n ? `; ${plural(n, 'shard')} re-queued` : ''}`;
    }
    case 'job-assigned': {
      const k = str(d.key);
      const slash = k.lastIndexOf('/');
      const what = slash > 0 ? `${k.slice(slash + 1)} of ${content(k.slice(0, slash))}` : k;
      return `${d.klass ? `${str(d.klass)} ` : ''}${shortJob(d.jobId)} to ${str(d.peerId)}: ${plural(num(d.shards), 'shard')} of ${what}`;
    }
    case 'job-done':
      return `${shortJob(d.jobId)} done by ${str(d.peerId)}`;
    case 'job-requeued': {
      const idx = Array.isArray(d.indices) ? (d.indices as number[]) : [];
      const range = idx.length === 0 ? 'nothing left' : idx.length === 1 ? `shard ${idx[0]}` : `${idx.length} shards (${idx[0]}–${idx[idx.length - 1]})`;
      return `${shortJob(d.jobId)} from ${str(d.peerId)} re-queued: ${range} ${str(d.rendition)} of ${content(d.contentId)} — ${str(d.reason, 'no reason')}`;
    }
    case 'shard-rejected':
      return `${shard(d.key)} from ${str(d.peerId)} rejected: ${str(d.reason, 'no reason')}`;
    case 'shard-failed':
      return `${shard(d.key)} failed after ${plural(num(d.attempts), 'attempt')}; no more tries — ${str(d.reason, 'no reason')}`;
    case 'content-complete':
      return `${content(d.contentId)} is fully encoded`;
    case 'encoder-quarantined': {
      const until = num(d.until);
      return `encoder ${str(d.peerId)} quarantined${until ? ` for ${durationText(until - ev.at)}` : ''}: ${str(d.reason, 'no reason')}`;
    }
    case 'replicate': {
      const from = num(d.from);
      const source = from === 0 ? (d.cached ? 'the cache' : 'nowhere') : `${plural(from, 'holder')}${d.cached ? ' or the cache' : ''}`;
      return `${str(d.peerId)} asked to copy ${shard(d.key)} from ${source} — ${str(d.reason, 'no reason')}`;
    }
    case 'replica-stored':
      return `${str(d.peerId)} now holds a replica of ${shard(d.key)}`;
    case 'replica-released':
      return `${str(d.peerId)} released its replica of ${shard(d.key)} (demand cooled)`;
    case 'shard-orphaned':
      return `${shard(d.key)} lost its last holder: ${d.action === 'from-cache' ? 'an encoder copies it from the cache' : 'it will be encoded again'}`;
    case 'job-preempted':
      return `background ${shortJob(d.jobId)} on ${str(d.peerId)} preempted for live ${shard(d.for)}`;
    case 'check-planned':
      return `${d.stage === 'decide' ? 'a third encode decides' : 'cross-check of'} ${plural(num(d.shards), 'shard')} from ${str(d.origin)} (${shard(d.key)}…)`;
    case 'check-passed':
      return `${str(d.verifier)} reproduced ${plural(num(d.shards), 'shard')} of ${str(d.origin)} byte for byte`;
    case 'encoder-convicted':
      return `encoder ${str(d.peerId)} failed a cross-check: ${plural(num(d.wrong), 'wrong shard')}, ${plural(num(d.revoked), 'unverified shard')} taken back`;
    case 'shard-revoked':
      return `${shard(d.key)} from ${str(d.peerId)} taken back: ${str(d.reason, 'no reason')}`;
    case 'peer-reported':
      return `${str(d.reporter)} reports ${shard(d.key)} from ${str(d.peerId)}: ${str(d.reason, 'no reason')}${d.recheck ? '; encoding it again to check' : ''}`;
    default:
      return `${ev.type} ${JSON.stringify(ev.detail)}`;
  }
}

export interface EventLine {
  /** The newest event of the group. */
  ev: PoolEvent;
  text: string;
  /** Events in the group (1 for most). */
  count: number;
  /** Lowest and highest shard index of a group of shard events. */
  lo?: number;
  hi?: number;
}

/**
 * Events (newest first) as lines, with bursts folded: events of the same type
 * saying the same thing of different shards within a few seconds (an encoder
 * leaving orphans hundreds; a hot spot asks for dozens of replicas) make one
 * line, placed where its newest event is.
 */
export function eventLines(events: readonly PoolEvent[], names: ReadonlyMap<string, string>, windowMs = 3000): EventLine[] {
  const out: EventLine[] = [];
  const open = new Map<string, EventLine>();
  for (const ev of events) {
    const text = eventText(ev, names);
    const d = (ev.detail && typeof ev.detail === 'object' ? ev.detail : {}) as Record<string, unknown>;
    const k = parseKey(d.key);
    if (!k) {
      out.push({ ev, text, count: 1 });
      continue;
    }
    const index = k.index;
    // The same sentence but for numbers (shard index, rates) and whether the cache also has it.
    const key = `${ev.type} ${k.contentId} ${text.replace(/ or the cache/g, '').replace(/\d+(\.\d+)?/g, '#')}`;
    const group = open.get(key);
    if (group && group.ev.at - ev.at <= windowMs) {
      group.count++;
      group.lo = Math.min(group.lo ?? index, index);
      group.hi = Math.max(group.hi ?? index, index);
      continue;
    }
    const line: EventLine = { ev, text, count: 1, lo: index, hi: index };
    open.set(key, line);
    out.push(line);
  }
  return out;
}
