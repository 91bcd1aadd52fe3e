/**
 * The viewer's rendition policy (ABR), pure: which video renditions to try
 * for a shard, best first, and the throughput estimate it is fed. No state of
 * its own: the Viewer keeps the estimate in its stats.
 */
import type { VideoRendition } from '../shared/shardMap.ts';

/**
 * Rendition ids to try for one shard, best first: from the highest rung whose
 * bitrate fits `bps * safety` (the lowest rung when none fits) down, a lower
 * rendition being the fallback and never a higher one; among those, the ones
 * `available` says someone holds come first. `ladder` is sorted by bitrate,
 * highest first; `bps` in bits/s.
 */
export function videoOrder(ladder: readonly VideoRendition[], bps: number, safety: number, available: (id: string) => boolean): string[] {
  const affordable = ladder.filter((r) => r.video.bitrate <= bps * safety);
  const startAt = affordable.length ? ladder.indexOf(affordable[0]!) : ladder.length - 1;
  const order = ladder.slice(startAt).map((r) => r.id);
  // Prefer a rendition someone holds over an unheld higher one.
  return [...order.filter(available), ...order.filter((id) => !available(id))];
}

/**
 * The throughput estimate after one more transfer (bits/s): a moving average
 * of per-transfer rates, so recent transfers count most and a peer
 * connection's setup (not in `transferMs`) is not taken for a rate. `prev` 0
 * means no estimate yet.
 */
export function nextThroughput(prev: number, bytes: number, transferMs: number): number {
  const bps = (bytes * 8) / (Math.max(1, transferMs) / 1000);
  return prev ? 0.7 * prev + 0.3 * bps : bps;
}
