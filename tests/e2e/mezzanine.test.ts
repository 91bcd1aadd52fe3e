/**
 * A source only volunteers decode (tests/harness/inputFixtures.ts shapes
 * marked `normalized`: Ogg Theora/Vorbis), end to end with nothing simulated:
 * published `normalizing`, made into a mezzanine by two real ffmpeg.wasm tabs
 * that must agree byte for byte (the single-thread core is deterministic),
 * then encoded by the same tabs, played to `ended` without a stall, exported
 * and judged by native ffmpeg against what a player shows for the source.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, newPage, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { INPUT_SHAPES, inputFixture } from '../harness/inputFixtures.ts';
import { judge } from '../harness/inputJudge.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { watchToEnd } from '../harness/viewerPage.ts';

const SHAPES = INPUT_SHAPES.filter((s) => s.normalized);

let browser: Browser;
let server: TestServer;
const tabs: TrackedPage[] = [];

async function contentOf(id: string): Promise<{ status: string; reason?: string; shardMap?: ShardMap }> {
  return (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap?: ShardMap };
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  browser = await launchBrowser();
  server = await startTestServer({});
  for (let i = 0; i < 2; i++) tabs.push(await openEncoderTab(browser, `${server.url}/encode?persist=0&engines=ffmpeg-wasm&mezzaninePollMs=1000`));
}, 120_000);

afterAll(async () => {
  for (const t of tabs) await t.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

describe('sources only volunteers decode', () => {
  it('has shapes to try', () => expect(SHAPES.length).toBeGreaterThan(0));

  it.each(SHAPES.map((s) => [s.name, s] as const))(
    '%s is normalised by two tabs, encoded, played and exported as a player shows it',
    async (_n, shape) => {
      const file = await inputFixture(shape);
      const r = await upload(server.url, fs.readFileSync(file), '', path.basename(file));
      expect(r.status, JSON.stringify(r.json)).toBe(202);
      const id = r.json.id as string;
      const map = await until(
        'the content to be encoded',
        async () => {
          const c = await contentOf(id);
          return c.status === 'ready' ? c.shardMap : undefined;
        },
        240_000,
      ).catch(async (e: Error) => {
        throw new Error(
          `${e.message}: ${JSON.stringify(await contentOf(id)).slice(0, 300)}; tab logs: ${(await Promise.all(tabs.map((t) => t.page.evaluate(() => JSON.stringify((window as any).shardcastEncoder?.state.log?.slice(-6)))))).join(' || ')}`,
        );
      });
      expect(map.source.video?.codec).toBe('avc');
      const viewer = await newPage(browser);
      try {
        await viewer.page.goto(`${server.url}/watch/${id}?cache=0`);
        const played = await watchToEnd(viewer, 90_000);
        expect(played.stats.stalls).toBe(0);
      } finally {
        await viewer.context.close().catch(() => {});
      }
      const res = await fetch(`${server.url}/api/contents/${id}/export.mp4`);
      expect(res.status).toBe(200);
      const out = path.join(server.dataDir, `${shape.name}-export.mp4`);
      fs.writeFileSync(out, new Uint8Array(await res.arrayBuffer()));
      const j = await judge(file, out);
      console.log(
        `mezzanine ${shape.name}: ${j.source.frameTimes.length}→${j.export.frameTimes.length} frames, PSNR mean ${j.psnrMean.toFixed(1)} min ${Math.min(...j.psnr).toFixed(1)} dB, A/V ${j.avOffset ? `${(j.avOffset.source * 1000).toFixed(1)}→${(j.avOffset.export * 1000).toFixed(1)} ms` : 'none'}`,
      );
      expect(j.failures).toEqual([]);
    },
    420_000,
  );
});
