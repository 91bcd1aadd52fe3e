/**
 * i. Picture verification (signaling/pool/Verification.ts, src/encoder/Verifier.ts):
 * what it costs as a share of encode work, and how it separates honest shards
 * from wrong pictures, for both engines. Per engine: a fresh server that
 * verifies every job by picture (ffmpeg.wasm shards too, which normally get
 * hash cross-checks), a Node-side cheater claiming that engine for its first
 * job (wrong pictures: negated or black, native ffmpeg), then two real tabs
 * that encode the bench clip's 360p rung with that engine and verify each
 * other's shards and the cheater's.
 */
import fs from 'node:fs';
import type { Browser } from 'playwright';
import type { VerifyMeasure } from '../../src/shared/protocol.ts';
import { launchBrowser, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { nativeEncoder, type Honesty } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { startTestServer, upload } from '../harness/testServer.ts';
import { type Bench, type Sample, open, quantile } from './common.ts';
import { WEBCODECS_RUNGS } from './webcodecs.ts';

interface Run {
  honest: VerifyMeasure[];
  wrong: VerifyMeasure[];
  /** Honest shards a verifier failed (false alarms), of honest shards measured. */
  falseAlarms: number;
  /** Tab sums, ms: encode exec, verification exec, verification wall (fetch, demux, exec); shards of each. */
  encodeMs: number;
  shardsEncoded: number;
  verifyExecMs: number;
  verifyMs: number;
  shardsVerified: number;
}

async function verifyRun(browser: Browser, engines: string, claim: string, cheat: Exclude<Honesty, 'sleeper'>): Promise<Run> {
  const server = await startTestServer({ verifySampleRate: 1, verifyPictureEngines: 'ffmpeg-wasm,webcodecs' });
  const pages: TrackedPage[] = [];
  try {
    const [w, h, bitrate] = WEBCODECS_RUNGS[0];
    const ladder = encodeURIComponent(JSON.stringify([{ id: 'v', video: { codec: 'h264', width: w, height: h, bitrate } }]));
    const id = (await upload(server.url, fs.readFileSync(await fixture('bench-720p')), `?renditions=${ladder}`)).json.id as string;
    const measured: { origin: string; measures: VerifyMeasure[] }[] = [];
    const fails: string[] = [];
    server.pool.on('verify-measured', (e) => measured.push(e));
    server.pool.on('verify-fail', (e) => fails.push(e.origin));
    const cheater = await nativeEncoder(server.url, cheat, claim);
    await waitFor(() => cheater.jobs >= 1 || undefined, 'the cheater at work', 60_000);
    cheater.stop();
    const tabs: TrackedPage[] = [];
    for (let i = 0; i < 2; i++) {
      const t = await open(browser, `${server.url}/encode?persist=0&engines=${engines}`, pages);
      await t.page.waitForFunction(() => (window as any).shardcastEncoder?.state?.connection === 'open', null, { timeout: 120_000 });
      await t.page.evaluate('window.__name ??= (f) => f');
      await t.page.evaluate(() => {
        const w = window as any;
        w.benchVerifies = [];
        w.shardcastEncoder.verifier.on('verified', (e: { measures: unknown[]; ms: number; execMs: number }) =>
          w.benchVerifies.push({ n: e.measures.length, ms: e.ms, execMs: e.execMs }),
        );
      });
      tabs.push(t);
    }
    await waitFor(
      async () => {
        const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string };
        const v = server.pool.verification;
        return c.status === 'ready' && v.queue.length === 0 && v.inProgress.length === 0 && server.pool.jobs.size === 0 ? true : undefined;
      },
      'content encoded and every verification settled',
      600_000,
    );
    const run: Run = { honest: [], wrong: [], falseAlarms: 0, encodeMs: 0, shardsEncoded: 0, verifyExecMs: 0, verifyMs: 0, shardsVerified: 0 };
    for (const m of measured) (m.origin === cheater.peer.peerId ? run.wrong : run.honest).push(...m.measures);
    run.falseAlarms = fails.filter((o) => o !== cheater.peer.peerId).length;
    for (const t of tabs) {
      const s = await t.page.evaluate(() => {
        const w = window as any;
        return { st: w.shardcastEncoder.state, v: w.benchVerifies as { n: number; ms: number; execMs: number }[] };
      });
      run.encodeMs += s.st.encodeMs;
      run.shardsEncoded += s.st.shardsEncoded;
      for (const v of s.v) {
        run.verifyExecMs += v.execMs;
        run.verifyMs += v.ms;
        run.shardsVerified += v.n;
      }
    }
    return run;
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await server.destroy();
  }
}

function rows(label: string, cheat: string, r: Run): Sample[] {
  const psnr = (xs: VerifyMeasure[]) => xs.map((m) => m.psnr);
  const enc = r.encodeMs / Math.max(1, r.shardsEncoded);
  const ver = r.verifyExecMs / Math.max(1, r.shardsVerified);
  const wall = r.verifyMs / Math.max(1, r.shardsVerified);
  return [
    {
      metric: `${label}: verify / encode time per shard`,
      unit: 'x',
      value: ver / enc,
      note: `verify exec ${ver.toFixed(0)} ms (wall with fetches ${wall.toFixed(0)} ms) vs encode exec ${enc.toFixed(0)} ms per shard`,
    },
    { metric: `${label}: honest shards failed`, unit: 'shards', value: r.falseAlarms, note: `of ${r.honest.length} honest shards measured` },
    { metric: `${label}: honest PSNR min`, unit: 'dB', value: Math.min(...psnr(r.honest)), note: `median ${quantile(psnr(r.honest), 0.5).toFixed(1)} dB` },
    { metric: `${label}: honest frame time error max`, unit: 'ms', value: Math.max(...r.honest.map((m) => m.maxTimeError)) * 1000 },
    {
      metric: `${label}: wrong-picture (${cheat}) PSNR max`,
      unit: 'dB',
      value: Math.max(...psnr(r.wrong)),
      note: `${r.wrong.length} measures, median ${quantile(psnr(r.wrong), 0.5).toFixed(1)} dB`,
    },
  ];
}

export const verify: Bench = async () => {
  const browser = await launchBrowser();
  try {
    const ff = await verifyRun(browser, 'ffmpeg-wasm', 'ffmpeg-wasm@core-0.12.10-st/veryfast', 'other');
    const wc = await verifyRun(browser, 'ffmpeg-wasm,webcodecs', 'webcodecs@Chromium/0-linux-x86', 'black');
    return [...rows('ffmpeg.wasm', 'negated', ff), ...rows('WebCodecs', 'black', wc)];
  } finally {
    await browser.close();
  }
};
