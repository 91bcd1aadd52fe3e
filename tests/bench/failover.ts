import fs from 'node:fs';
import { launchBrowser, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { startTestServer, upload } from '../harness/testServer.ts';
import { type Bench, type Sample, open, viewerStats, waitCached, waitReady } from './common.ts';

/**
 * One encoder tab holds every shard; the viewer plays from it with the cache
 * on, and the tab is killed one second in. Stall time as the element reports
 * it (waiting to playing), with the default look-ahead and with a short one.
 */
export const failover: Bench = async () => {
  const out: Sample[] = [];
  for (const lookAhead of [6, 1]) {
    const server = await startTestServer({});
    const encB = await launchBrowser();
    const viewB = await launchBrowser();
    const pages: TrackedPage[] = [];
    try {
      const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
      const enc = await open(encB, `${server.url}/encode?persist=0`, pages);
      const map = await waitReady(server, json.id);
      await waitCached(server, json.id, map);
      const v = await open(viewB, `${server.url}/watch/${json.id}?lookAheadSeconds=${lookAhead}`, pages);
      await v.page.waitForFunction(() => (window as any).shardcastViewer.video.currentTime > 1, null, { timeout: 60_000 });
      await enc.context.close();
      await v.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: 120_000 });
      const st = await viewerStats(v);
      out.push({
        metric: `stall when the only holder dies at 1 s (look-ahead ${lookAhead} s, cache on)`,
        unit: 'ms',
        value: st.stallMs,
        note: `${st.stalls} stalls, ${st.fromCache} shards from cache, ${st.skipped} skipped`,
      });
    } finally {
      for (const p of pages) await p.context.close().catch(() => {});
      await encB.close();
      await viewB.close();
      await server.destroy();
    }
  }
  return out;
};
