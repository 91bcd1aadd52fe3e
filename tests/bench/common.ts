import type { Browser } from 'playwright';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { newPage, type TrackedPage } from '../harness/browser.ts';
import type { TestServer } from '../harness/testServer.ts';

export interface Sample {
  metric: string;
  unit: string;
  /** null (or NaN) when the run had nothing to measure: the table says "no samples", never NaN. */
  value: number | null;
  /** Context for the reader (no thresholds live here). */
  note?: string;
}

export type Bench = (run: number) => Promise<Sample[]>;

export const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (i - lo);
};

/** Polls until every variant of content `id` is ready (every `pollMs`); its map. */
export async function waitReady(server: TestServer, id: string, timeoutMs = 300_000, pollMs = 250): Promise<ShardMap> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end) throw new Error(`content ${id} was not encoded in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export async function waitCached(server: TestServer, id: string, map: ShardMap): Promise<void> {
  for (const s of map.shards) {
    for (const r of Object.keys(s.renditions)) {
      for (let i = 0; ; i++) {
        const res = await fetch(`${server.url}/api/contents/${id}/shards/${r}/${s.index}`, { method: 'HEAD' });
        if (res.ok) break;
        if (i > 300) throw new Error(`shard ${r}/${s.index} never reached the cache`);
        await new Promise((res2) => setTimeout(res2, 100));
      }
    }
  }
}

export async function open(browser: Browser, url: string, pages: TrackedPage[]): Promise<TrackedPage> {
  const t = await newPage(browser);
  pages.push(t);
  await t.page.goto(url);
  return t;
}

export const viewerStats = (t: TrackedPage) =>
  t.page.evaluate(() => (window as any).shardcastViewer.stats) as Promise<{
    firstFrameMs: number;
    transferMs: number[];
    stallMs: number;
    stalls: number;
    fromPeers: number;
    fromCache: number;
    skipped: number;
  }>;
