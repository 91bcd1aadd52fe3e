/**
 * Small pure helpers every part of the simulation shares: distributions,
 * shard keys, the agreed simulated shard hash (and its cache), counters and
 * example lists for the report.
 */
import { createHash } from 'node:crypto';
import type { Dist } from './options.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function dist(xs: number[]): Dist {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]! : NaN);
  return { n: s.length, median: q(0.5), p95: q(0.95), max: s.length ? s[s.length - 1]! : NaN };
}

export const keyStr = (contentId: string, rendition: string, index: number) => `${contentId}/${rendition}/${index}`;

/** Every simulated encoder makes the same bytes for a shard, so the same hash. */
export const shaCache = new Map<string, string>();
export function simSha(key: string): string {
  let h = shaCache.get(key);
  if (!h) shaCache.set(key, (h = createHash('sha256').update(key).digest('hex')));
  return h;
}

export function bump(rec: Record<string, number>, k: string, n = 1): void {
  rec[k] = (rec[k] ?? 0) + n;
}

export function pushExample(list: string[], s: string, max = 8): void {
  if (list.length < max) list.push(s.slice(0, 300));
}
