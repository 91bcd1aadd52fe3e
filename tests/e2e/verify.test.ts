/**
 * Picture verification among real tabs: WebCodecs output differs run to run,
 * so its shards cannot be cross-checked by hash. A Node-side encoder claims
 * WebCodecs and answers its jobs with structurally valid shards of the wrong
 * pictures (negated, standing in for another content's frames; native ffmpeg
 * with the tab's command line). Two real Chromium tabs, encoding with
 * WebCodecs themselves, verify each other's shards and the cheater's by
 * decoding them against the source (ffmpeg.wasm psnr): the cheater is
 * convicted by two verifiers, its shards are re-encoded, and the tabs' own
 * shards pass with no false alarm.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, openEncoderTab, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { nativeEncoder } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';

let browser: Browser;
let server: TestServer;
const pages: TrackedPage[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  // Every job verified, so the outcome does not hang on the sampling draw.
  server = await startTestServer({ verifySampleRate: 1 });
});
afterAll(async () => {
  for (const p of pages.splice(0)) await p.context.close().catch(() => {});
  await browser?.close();
  await server?.destroy();
});

describe('picture verification of WebCodecs shards among real tabs', () => {
  it('a wrong-picture WebCodecs shard is caught by two verifiers and re-encoded; honest WebCodecs shards pass', async () => {
    const ladder = encodeURIComponent(JSON.stringify([{ id: 'v', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } }]));
    const id = (await upload(server.url, fs.readFileSync(await fixture('v-23976')), `?renditions=${ladder}`)).json.id as string;
    const passed: string[] = [];
    const fails: { origin: string; reason: string }[] = [];
    const convicted: string[] = [];
    server.pool.on('verify-passed', (e) => passed.push(e.origin));
    server.pool.on('verify-fail', (e) => fails.push(e));
    server.pool.on('verify-convicted', (e) => convicted.push(e.origin));
    const cheater = await nativeEncoder(server.url, 'other', 'webcodecs@Chromium/0-linux-x86');
    await waitFor(() => cheater.jobs >= 1 || undefined, 'the cheater at work', 60_000);
    cheater.stop();
    const tabs: TrackedPage[] = [];
    for (let i = 0; i < 2; i++) {
      const t = await openEncoderTab(browser, `${server.url}/encode?persist=0`);
      pages.push(t);
      tabs.push(t);
    }
    const tabIds = await Promise.all(tabs.map((t) => t.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string)));
    const map = await waitFor(
      async () => {
        const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
        const v = server.pool.verification;
        return c.status === 'ready' && v.queue.length === 0 && v.inProgress.length === 0 && server.pool.jobs.size === 0 ? c.shardMap : undefined;
      },
      'content encoded and every verification settled',
      240_000,
    );
    expect(convicted).toEqual([cheater.peer.peerId]);
    expect(server.pool.health.isQuarantined(cheater.peer.peerId)).toBe(true);
    for (const s of map.shards) expect(s.renditions.v!.sha256).not.toBe(cheater.made.get(`${id}/v/${s.index}`));
    // The tabs' shards were made by WebCodecs, verified, and passed with no false alarm.
    expect(map.shards.every((s) => s.renditions.v!.engine?.startsWith('webcodecs@'))).toBe(true);
    expect(passed.filter((o) => tabIds.includes(o)).length).toBeGreaterThan(0);
    expect(fails.filter((f) => f.origin !== cheater.peer.peerId)).toEqual([]);
    for (const t of tabIds) expect(server.pool.health.isQuarantined(t)).toBe(false);
    const verifications = await Promise.all(tabs.map((t) => t.page.evaluate(() => (window as any).shardcastEncoder.state.verifications as number)));
    expect(verifications.every((n) => n > 0)).toBe(true);
    for (const t of tabs) expect(t.problems).toEqual([]);
    console.log(
      `e2e verify: ${cheater.made.size} cheater shards, fails ${JSON.stringify(fails.map((f) => f.reason))}, counters ${JSON.stringify(server.pool.snapshot().verification)}`,
    );
  });
});
