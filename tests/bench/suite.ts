/**
 * `npm run bench`: measurements in real headless Chromium, side by side in one
 * run, repeated (--runs N, default 3) and reported as median and min/max.
 * Prints a markdown table and writes tests/bench/RESULTS.md and results.json.
 *
 * Run inside the private network namespace by tests/harness/run.ts --bench.
 * Pick benches with --only delivery,failover. Each bench is a function that
 * returns rows; add new ones to BENCHES.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, newPage, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { formatReport, runChurn } from '../sim/churn.ts';

interface Sample {
  metric: string;
  unit: string;
  value: number;
  /** Higher is better (for the reader; no thresholds live here). */
  note?: string;
}

type Bench = (run: number) => Promise<Sample[]>;

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const RUNS = Number(opt('runs') ?? 3);
const ONLY = opt('only')?.split(',');
const OUT_DIR = import.meta.dirname;

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (i - lo);
};

async function waitReady(server: TestServer, id: string, timeoutMs = 300_000): Promise<ShardMap> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end) throw new Error(`content ${id} was not encoded in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function waitCached(server: TestServer, id: string, map: ShardMap): Promise<void> {
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

async function open(browser: Browser, url: string, pages: TrackedPage[]): Promise<TrackedPage> {
  const t = await newPage(browser);
  pages.push(t);
  await t.page.goto(url);
  return t;
}

const viewerStats = (t: TrackedPage) => t.page.evaluate(() => (window as any).shardcastViewer.stats) as Promise<{ firstFrameMs: number; transferMs: number[]; stallMs: number; stalls: number; fromPeers: number; fromCache: number; skipped: number }>;

// ---------------------------------------------------------------- e. delivery

/**
 * Shards already encoded by an encoder tab in one browser process; a viewer in
 * another. Time to first frame (from navigation), per-shard transfer latency
 * over open channels, and throughput of our protocol against a bare
 * RTCDataChannel, like for like: the same two pages (encoder tab sends, viewer
 * receives), 16 MiB per transfer in 64 KiB messages, both connections warmed
 * by one transfer first, each timed at the receiver from its request to the
 * last byte (ours also includes the SHA-256 check). The two alternate,
 * THROUGHPUT_REPS times each, and each figure is the median of its reps, so
 * a burst of load from elsewhere on the machine hits both alike.
 */
const THROUGHPUT_BYTES = 16 * 2 ** 20;
const THROUGHPUT_REPS = 3;

const delivery: Bench = async () => {
  const server = await startTestServer({});
  const encB = await launchBrowser();
  const viewB = await launchBrowser();
  const pages: TrackedPage[] = [];
  try {
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    const enc = await open(encB, `${server.url}/encode?persist=0`, pages);
    await waitReady(server, json.id);
    const v = await open(viewB, `${server.url}/watch/${json.id}?cache=0`, pages);
    await v.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: 120_000 });
    const st = await viewerStats(v);
    if (st.fromPeers === 0) throw new Error('the viewer got nothing from peers');

    // Our protocol: one shard of THROUGHPUT_BYTES, chunked, backpressured, hash-verified at the end.
    const size = THROUGHPUT_BYTES;
    const key = { contentId: 'bench', rendition: 'blob', index: 0 };
    const sha = await enc.page.evaluate(async ({ key, size }) => {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
      const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      const sha = [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
      await (window as any).shardcastEncoder.store.put(key, sha, bytes);
      return sha;
    }, { key, size });
    const peerId = await enc.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string);
    const protocolMs = () =>
      v.page.evaluate(async ({ key, sha, peerId }) => {
        const t = await (window as any).shardcastViewer.transferTo(peerId);
        const t0 = performance.now();
        await t.fetch(key, sha, 120_000);
        return performance.now() - t0;
      }, { key, sha, peerId });
    const rawMs = await rawDataChannel(enc, v);

    await protocolMs();
    await rawMs(size);
    const proto: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < THROUGHPUT_REPS; i++) {
      proto.push(await protocolMs());
      raw.push(await rawMs(size));
    }
    const protoMBps = size / 2 ** 20 / (quantile(proto, 0.5) / 1000);
    const rawMBps = size / 2 ** 20 / (quantile(raw, 0.5) / 1000);
    const like = `16 MiB, 64 KiB messages, same two pages, warm, median of ${THROUGHPUT_REPS} alternating`;
    return [
      { metric: 'time to first frame (shards encoded, cache off)', unit: 'ms', value: st.firstFrameMs },
      { metric: 'shard transfer latency over an open channel, median', unit: 'ms', value: quantile(st.transferMs, 0.5) },
      { metric: 'shard transfer latency over an open channel, p95', unit: 'ms', value: quantile(st.transferMs, 0.95) },
      { metric: 'shard protocol throughput (16 MiB shard, hash checked)', unit: 'MB/s', value: protoMBps, note: like },
      { metric: 'raw RTCDataChannel throughput (same two pages)', unit: 'MB/s', value: rawMBps, note: like },
      { metric: 'shard protocol / raw data channel', unit: 'ratio', value: protoMBps / rawMBps },
    ];
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await encB.close();
    await viewB.close();
    await server.destroy();
  }
};

/**
 * A bare RTCDataChannel from page `from` to page `to`, on a connection of its
 * own signalled by this script (no trickle). Returns a function that times one
 * transfer at the receiver: it asks for `bytes` over the channel, the sender
 * answers with 64 KiB messages paced on bufferedAmount (4 MiB high, 1 MiB low:
 * more slack than our links allow themselves), and the time runs to the last byte.
 */
async function rawDataChannel(from: TrackedPage, to: TrackedPage): Promise<(bytes: number) => Promise<number>> {
  // tsx compiles named functions with an __name helper, which page functions defining their own need.
  for (const t of [from, to]) await t.page.evaluate('window.__name ??= (f) => f');
  const gather = `(pc) => new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); else pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()); })`;
  const offer = await from.page.evaluate(async (gatherSrc) => {
    const gather = eval(gatherSrc);
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel('raw', { ordered: true });
    dc.bufferedAmountLowThreshold = 1 << 20;
    const chunk = new Uint8Array(65536);
    dc.onmessage = async (e) => {
      for (let sent = 0; sent < Number(e.data); sent += chunk.length) {
        if (dc.bufferedAmount > 4 << 20) await new Promise((r) => dc.addEventListener('bufferedamountlow', r, { once: true }));
        dc.send(chunk);
      }
    };
    (window as any).rawBench = { pc, dc };
    await pc.setLocalDescription(await pc.createOffer());
    await gather(pc);
    return pc.localDescription!.toJSON();
  }, gather);
  const answer = await to.page.evaluate(async ({ offer, gatherSrc }) => {
    const gather = eval(gatherSrc);
    const pc = new RTCPeerConnection({ iceServers: [] });
    const channel = new Promise<RTCDataChannel>((resolve) =>
      pc.addEventListener('datachannel', ({ channel }) => {
        channel.binaryType = 'arraybuffer';
        if (channel.readyState === 'open') resolve(channel);
        else channel.addEventListener('open', () => resolve(channel), { once: true });
      }),
    );
    (window as any).rawBench = {
      pc,
      transfer: async (want: number) => {
        const dc = await channel;
        return new Promise<number>((resolve) => {
          let got = 0;
          dc.onmessage = (e) => {
            got += (e.data as ArrayBuffer).byteLength;
            if (got >= want) resolve(performance.now() - t0);
          };
          const t0 = performance.now();
          dc.send(String(want));
        });
      },
    };
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    await gather(pc);
    return pc.localDescription!.toJSON();
  }, { offer, gatherSrc: gather });
  await from.page.evaluate(async (answer) => {
    await ((window as any).rawBench.pc as RTCPeerConnection).setRemoteDescription(answer);
  }, answer);
  return (bytes) => to.page.evaluate((n) => (window as any).rawBench.transfer(n) as Promise<number>, bytes);
}

// ---------------------------------------------------------------- f. failover

/**
 * One encoder tab holds every shard; the viewer plays from it with the cache
 * on, and the tab is killed one second in. Stall time as the element reports
 * it (waiting to playing), with the default look-ahead and with a short one.
 */
const failover: Bench = async () => {
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
      out.push({ metric: `stall when the only holder dies at 1 s (look-ahead ${lookAhead} s, cache on)`, unit: 'ms', value: st.stallMs, note: `${st.stalls} stalls, ${st.fromCache} shards from cache, ${st.skipped} skipped` });
    } finally {
      for (const p of pages) await p.context.close().catch(() => {});
      await encB.close();
      await viewB.close();
      await server.destroy();
    }
  }
  return out;
};

// ---------------------------------------------------------------- g. churn

/**
 * The pool manager at scale, no browsers: the real server process driven by
 * 200 simulated encoders and 500 simulated viewers over 4 contents for 90 s
 * (tests/sim/churn.ts), with 20%/min random departures (half of them
 * silent), reloads, joins, and a quarter of the pool leaving at once at 45 s.
 * Heartbeats at the server's defaults. The full table goes to the console.
 */
const churn: Bench = async (run) => {
  const r = await runChurn({
    encoders: 200,
    viewers: 500,
    contents: 4,
    seconds: 90,
    settleSeconds: 20,
    viewerRamp: 20,
    batchAt: 45,
    heartbeatMs: 2000,
    heartbeatTimeoutMs: 6000,
    seed: run + 1,
  });
  console.log(formatReport(r));
  const kicked = `${r.requeue.departures.kicked} live encoders dropped for missed heartbeats`;
  return [
    { metric: 'completion: every variant of every content ready', unit: 's', value: r.completionSeconds ?? NaN, note: r.completionSeconds === null ? 'never complete' : undefined },
    { metric: 'shards lost at the end', unit: 'shards', value: r.lost.atEnd, note: `${r.lost.orphanedDuringRun} orphaned during the run, ${r.lost.recovered} recovered` },
    { metric: 're-queue delay (departure to reassigned), median', unit: 'ms', value: r.requeue.reassignMs.median, note: `${r.requeue.reassignMs.n} shards; ${kicked}` },
    { metric: 're-queue delay (departure to reassigned), p95', unit: 'ms', value: r.requeue.reassignMs.p95 },
    { metric: 'silent tab noticed after (timeout 6000 ms), p95', unit: 'ms', value: r.requeue.silentDetectMs.p95 },
    { metric: 'busiest holder load', unit: 'req/s', value: r.load.busiestRps, note: `mean ${r.load.meanRps.toFixed(2)} req/s` },
    { metric: 'busiest holder / mean holder', unit: 'ratio', value: r.load.busiestToMean },
    { metric: 'viewer shards missed (skipped)', unit: 'shards', value: r.viewers.missesUnencoded + r.viewers.missesNoHolder, note: `of ${r.viewers.fromPeers + r.viewers.fromCache} fetched` },
    { metric: 'locate round trip, p95', unit: 'ms', value: r.viewers.locateRttMs.p95 },
    { metric: 'server CPU over the run', unit: 's', value: r.server.cpuSeconds, note: `peak ${r.server.peakCpuPercent.toFixed(0)}% of a core in one second` },
    { metric: 'server peak RSS', unit: 'MB', value: r.server.rssPeakMB },
    { metric: 'WebSocket messages through the server', unit: 'msg/s', value: r.server.messagesPerSecond },
  ];
};

// ---------------------------------------------------------------- a-d. encoding

const run = (args: string[]) => execFileSync('ffmpeg', ['-v', 'error', '-y', ...args], { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });

/** x264 settings of a video job (src/encoder/ffmpegArgs.ts), parameterised by size, rate control and key frames. */
function x264Args(w: number, h: number, rate: string[], keys: string[]): string[] {
  return ['-vf', `scale=${w}:${h}:flags=bicubic,setsar=1`, '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-bf', '0', '-sc_threshold', '0', ...rate, ...keys];
}

/** An encoder tab on ffmpeg.wasm alone (the WebCodecs fast path is bench h), ready to run execs; `query` adds settings. */
async function benchTab(browser: Browser, server: TestServer, pages: TrackedPage[], query = ''): Promise<TrackedPage> {
  const t = await open(browser, `${server.url}/encode?persist=0&engines=ffmpeg-wasm${query}`, pages);
  await t.page.waitForFunction(() => (window as any).shardcastEncoder?.state?.phase === 'idle', null, { timeout: 120_000 });
  return t;
}

/** Runs one ffmpeg.wasm exec in the tab on `input`; returns exec ms and the named outputs. */
async function tabExec(t: TrackedPage, input: Uint8Array, args: string[], outputs: string[]): Promise<{ ms: number; files: Record<string, Uint8Array> }> {
  const r = await t.page.evaluate(
    async ({ b64, args, outputs }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const e = (window as any).shardcastEncoder.engine;
      const res = await e.exec((d: string) => args.map((a: string) => a.replace('$IN', `${d}/in.mp4`).replace('$OUT', `${d}/`)), { 'in.mp4': bytes });
      const files: Record<string, string> = {};
      for (const o of outputs) {
        const f = res.files.get(o);
        if (!f) throw new Error(`no output ${o}: ${[...res.files.keys()].join(',')}`);
        let bin = '';
        for (let i = 0; i < f.length; i += 0x8000) bin += String.fromCharCode(...f.subarray(i, i + 0x8000));
        files[o] = btoa(bin);
      }
      return { ms: res.execMs as number, files };
    },
    { b64: Buffer.from(input).toString('base64'), args, outputs },
  );
  return { ms: r.ms, files: Object.fromEntries(Object.entries(r.files).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])) };
}

function psnr(file: string, source: string, w: number, h: number): number {
  const r = spawnSync('ffmpeg', ['-v', 'info', '-i', file, '-i', source, '-lavfi', `[1:v]scale=${w}:${h}:flags=bicubic[ref];[0:v][ref]psnr`, '-f', 'null', '-'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return Number(/average:([\d.]+)/.exec(r.stderr)?.[1]);
}

/** CRFs of the native 2 s GOP reference curve (bytes against PSNR). */
const REFERENCE_CRFS = [19, 21, 23, 25, 27];

/** log(bytes) at `db` on a (PSNR, bytes) curve, linear in between its points; NaN outside it. */
function bytesAtPsnr(curve: { db: number; bytes: number }[], db: number): number {
  const c = [...curve].sort((a, b) => a.db - b.db);
  for (let i = 1; i < c.length; i++) {
    const [a, b] = [c[i - 1]!, c[i]!];
    if (db >= a.db && db <= b.db) return Math.exp(Math.log(a.bytes) + ((db - a.db) / (b.db - a.db)) * (Math.log(b.bytes) - Math.log(a.bytes)));
  }
  return NaN;
}

/**
 * d. What 0.3 s and 0.5 s key frame spacing costs in bytes against a 2 s GOP,
 * at equal CRF (23) and at equal quality: the shard encodes run in the tab's
 * ffmpeg.wasm with the product's x264 settings; the 2 s GOP reference is
 * encoded natively (one thread: the same bytes as the tab, checked in a row)
 * at REFERENCE_CRFS, and its bytes are interpolated at the PSNR each shard
 * encode reaches (a one-point BD-rate). Deterministic, so run once.
 * Short-GOP x264 tuning (qcomp, ipratio, aq-mode, mbtree, rc-lookahead,
 * keyint=9) measured the same way moved the equal-PSNR ratio by at most 3%,
 * or helped the 2 s GOP just as much (aq-mode=2: -3.7% on both), so the
 * product keeps x264's defaults; the native rows below keep that visible.
 */
async function keyFrameCost(t: TrackedPage, input: Uint8Array, source: string, dir: string): Promise<Sample[]> {
  const out: Sample[] = [];
  const settings = 'x264 veryfast, high, no B-frames, scenecut off, 640x360';
  const encodeNative = (name: string, rate: string[], keys: string[], tune: string[] = []) => {
    const file = path.join(dir, `${name}.mp4`);
    run(['-i', source, '-an', ...x264Args(640, 360, rate, keys), ...tune, '-threads', '1', '-f', 'mp4', file]);
    return { bytes: fs.statSync(file).size, db: psnr(file, source, 640, 360) };
  };
  const gop2 = ['-g', '60', '-keyint_min', '60'];
  const reference = REFERENCE_CRFS.map((crf) => encodeNative(`ref_crf${crf}`, ['-crf', String(crf)], gop2));
  const refAt23 = reference[REFERENCE_CRFS.indexOf(23)]!;
  const variants = [
    ['2 s GOP', gop2],
    ['0.5 s key frames', ['-force_key_frames', 'expr:gte(t,n_forced*0.5)', '-g', '600']],
    ['0.3 s key frames', ['-force_key_frames', 'expr:gte(t,n_forced*0.3)', '-g', '600']],
  ] as const;
  for (const [name, keys] of variants) {
    const r = await tabExec(t, input, ['-nostdin', '-i', '$IN', '-an', ...x264Args(640, 360, ['-crf', '23'], [...keys]), '-f', 'mp4', '$OUTv.mp4'], ['v.mp4']);
    const file = path.join(dir, `${name.replace(/\W+/g, '_')}.mp4`);
    fs.writeFileSync(file, r.files['v.mp4']!);
    const bytes = r.files['v.mp4']!.byteLength;
    const db = psnr(file, source, 640, 360);
    out.push({ metric: `CRF 23 640x360, ${name}: PSNR`, unit: 'dB', value: db });
    if (name === '2 s GOP') {
      out.push({ metric: 'bytes, tab / native, same command (2 s GOP, CRF 23)', unit: 'ratio', value: bytes / refAt23.bytes, note: '1.00: the native reference curve stands for the tab' });
      continue;
    }
    out.push(
      { metric: `bytes, ${name} / 2 s GOP, equal CRF 23`, unit: 'ratio', value: bytes / refAt23.bytes, note: `${settings}; PSNR ${db.toFixed(2)} vs ${refAt23.db.toFixed(2)} dB` },
      { metric: `bytes, ${name} / 2 s GOP, equal PSNR`, unit: 'ratio', value: bytes / bytesAtPsnr(reference, db), note: `reference interpolated at ${db.toFixed(2)} dB from CRF ${REFERENCE_CRFS.join('/')}` },
    );
  }
  // Short-GOP tuning candidates (native, 0.3 s key frames), same yardstick.
  for (const tune of [['-x264-params', 'qcomp=0.7'], ['-x264-params', 'ipratio=1.2']]) {
    const r = encodeNative(`k03_${tune[1]!.replace(/\W+/g, '_')}`, ['-crf', '23'], ['-force_key_frames', 'expr:gte(t,n_forced*0.3)', '-g', '600'], tune);
    out.push({ metric: `bytes, 0.3 s key frames with ${tune[1]} / 2 s GOP, equal PSNR (native)`, unit: 'ratio', value: r.bytes / bytesAtPsnr(reference, r.db), note: 'not adopted: within 3% of the defaults' });
  }
  return out;
}

/**
 * a. One tab's x264 throughput at 640x360 and 1280x720 against native ffmpeg
 * with the same settings (default threads, and one thread), on the same slice;
 * and a second tab running the multi-thread core with `-threads 2`.
 * d. What 0.3 s and 0.5 s key frame spacing cost in bytes (keyFrameCost).
 */
const encoding: Bench = async (runIndex) => {
  const source = await fixture('bench-720p');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-enc-'));
  const server = await startTestServer({});
  const browser = await launchBrowser();
  const pages: TrackedPage[] = [];
  const out: Sample[] = [];
  try {
    const input = new Uint8Array(fs.readFileSync(source));
    const t = await benchTab(browser, server, pages);
    const mt = await benchTab(browser, server, pages, '&ffmpegCore=multi');
    if ((await mt.page.evaluate(() => (window as any).shardcastEncoder.engine.kind)) !== 'multi') throw new Error('the tab did not load the multi-thread core');
    // 10 s of the clip: enough for a steady rate, and it keeps the whole bench within its time budget.
    const frames = 300;
    for (const [w, h, rate] of [[640, 360, '800k'], [1280, 720, '2500k']] as const) {
      const args = [...x264Args(w, h, ['-b:v', rate, '-maxrate', rate, '-bufsize', rate], ['-g', '600']), '-frames:v', String(frames)];
      const tab = await tabExec(t, input, ['-nostdin', '-i', '$IN', '-an', ...args, '-f', 'null', '-'], []);
      const timeNative = (threads: string[]) => {
        const t0 = performance.now();
        run(['-i', source, '-an', ...args, ...threads, '-f', 'null', '-']);
        return performance.now() - t0;
      };
      const tabMt = await tabExec(mt, input, ['-nostdin', '-i', '$IN', '-an', ...args, '-threads', '2', '-f', 'null', '-'], []);
      const native = timeNative([]);
      const native1 = timeNative(['-threads', '1']);
      const fps = frames / (tab.ms / 1000);
      out.push(
        { metric: `tab ffmpeg.wasm x264 fps, ${w}x${h}`, unit: 'fps', value: fps },
        { metric: `native ffmpeg x264 fps, ${w}x${h} (2 threads)`, unit: 'fps', value: frames / (native / 1000) },
        { metric: `tab / native (2 threads), ${w}x${h}`, unit: 'ratio', value: native / tab.ms },
        { metric: `tab / native (1 thread), ${w}x${h}`, unit: 'ratio', value: native1 / tab.ms },
        { metric: `tab multi-thread core (-threads 2) fps, ${w}x${h}`, unit: 'fps', value: frames / (tabMt.ms / 1000) },
        { metric: `multi-thread / single-thread core, ${w}x${h}`, unit: 'ratio', value: tab.ms / tabMt.ms, note: 'two tabs of one browser, one at a time' },
        { metric: `tab multi-thread / native (2 threads), ${w}x${h}`, unit: 'ratio', value: native / tabMt.ms },
      );
    }
    if (runIndex === 0) out.push(...(await keyFrameCost(t, input, source, dir)));
    return out;
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await browser.close();
    await server.destroy();
  }
};

/**
 * b. Sharding overhead: one tab encodes the 20 s clip through the pool (0.3 s
 * shards, one 360p rendition), against the same tab encoding it in one exec.
 * c. Scaling: the same with two tabs.
 */
/**
 * Encoding benches measure the encoders' work, so cross-checks (which re-encode
 * a sample of jobs on purpose: all of a new encoder's first 3 jobs, then at
 * least 1 in 10) are off there; the byte check before acceptance stays on.
 */
const NO_CROSS_CHECKS = { verifySampleRate: 0, verifyNewEncoderJobs: 0 } as const;

const pool: Bench = async () => {
  const source = await fixture('bench-720p');
  const ladder = [{ id: '360p', video: { codec: 'h264', width: 640, height: 360, bitrate: 800_000 } }];
  const out: Sample[] = [];
  const poolRun = async (tabs: number): Promise<{ ms: number; jobs: number; mono?: number }> => {
    const server = await startTestServer(NO_CROSS_CHECKS);
    const browser = await launchBrowser();
    const pages: TrackedPage[] = [];
    try {
      const ts: TrackedPage[] = [];
      for (let i = 0; i < tabs; i++) ts.push(await benchTab(browser, server, pages));
      const t0 = performance.now();
      const { json } = await upload(server.url, fs.readFileSync(source), `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
      await waitReady(server, json.id);
      const ms = performance.now() - t0;
      const jobs = server.pool.counters.jobsCompleted;
      if (tabs > 1) return { ms, jobs };
      // The same tab, the whole clip in one exec with the same settings (fetch of the whole file included, as the pool's slices are).
      const m0 = performance.now();
      const input = new Uint8Array(await (await fetch(`${server.url}/api/contents/${json.id}/source?start=0&end=20&tracks=video`)).arrayBuffer());
      await tabExec(ts[0]!, input, ['-nostdin', '-i', '$IN', '-an', ...x264Args(640, 360, ['-b:v', '800000', '-maxrate', '1200000', '-bufsize', '1600000'], ['-g', '600']), '-f', 'mp4', '$OUTv.mp4'], []);
      return { ms, jobs, mono: performance.now() - m0 };
    } finally {
      for (const p of pages) await p.context.close().catch(() => {});
      await browser.close();
      await server.destroy();
    }
  };
  const one = await poolRun(1);
  const two = await poolRun(2);
  out.push(
    { metric: 'pool, 1 tab: 20 s 360p clip, wall time', unit: 's', value: one.ms / 1000 },
    { metric: 'pool, 1 tab: seconds per job (~3 s of content)', unit: 's', value: one.ms / 1000 / one.jobs },
    { metric: 'same tab, one exec for the whole clip', unit: 's', value: one.mono! / 1000 },
    { metric: 'sharding overhead: pool / one exec', unit: 'ratio', value: one.ms / one.mono! },
    { metric: 'pool, 2 tabs: wall time', unit: 's', value: two.ms / 1000 },
    { metric: 'speed-up, 2 tabs / 1 tab', unit: 'ratio', value: one.ms / two.ms },
  );
  return out;
};

// ---------------------------------------------------------------- h. WebCodecs H.264

/** Rungs of the default ladder for the 1280x720 30 fps bench clip (0.08 bits per pixel; src/shared/shardMap.ts). */
const WEBCODECS_RUNGS = [
  [640, 360, 553_000],
  [1280, 720, 2_212_000],
] as const;

/**
 * Calibration of WebCodecs H.264 rate control (src/encoder/config.ts): with
 * BENCH_WC_SCALES=1,1.5,2 the webcodecs bench encodes only with WebCodecs,
 * once per bitrate scale and rung, and reports PSNR and bytes.
 */
const WC_SCALES = process.env.BENCH_WC_SCALES?.split(',').map(Number);

interface PoolEncode {
  ms: number;
  bytes: number;
  psnr: number;
  /** Sums over the tabs: source-slice fetch and encode time, ms. */
  fetchMs: number;
  encodeMs: number;
  jobs: number;
}

/**
 * Encodes the bench clip through a fresh server and `tabs` encoder tabs that
 * offer `engines`, one H.264 rendition: wall time from upload to every shard
 * accepted, accepted bytes, and PSNR of the server's export against the source
 * (native ffmpeg as referee).
 */
async function poolEncode(browser: Browser, source: string, tabs: number, engines: string, [w, h, bitrate]: readonly [number, number, number], dir: string, params = ''): Promise<PoolEncode> {
  const server = await startTestServer(NO_CROSS_CHECKS);
  const pages: TrackedPage[] = [];
  try {
    const ts: TrackedPage[] = [];
    for (let i = 0; i < tabs; i++) {
      const t = await open(browser, `${server.url}/encode?persist=0&engines=${engines}${params}`, pages);
      await t.page.waitForFunction(() => (window as any).shardcastEncoder?.state?.phase === 'idle', null, { timeout: 120_000 });
      ts.push(t);
    }
    const ladder = [{ id: `${h}p`, video: { codec: 'h264', width: w, height: h, bitrate } }];
    const t0 = performance.now();
    const { json } = await upload(server.url, fs.readFileSync(source), `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    const map = await waitReady(server, json.id);
    const ms = performance.now() - t0;
    const want = engines.includes('webcodecs') ? 'webcodecs@' : 'ffmpeg-wasm@';
    const states = map.shards.map((s) => s.renditions[`${h}p`]!);
    const other = states.filter((st) => !st.engine?.startsWith(want)).length;
    if (other) throw new Error(`${other} shards were not made by ${want} (${states.find((st) => !st.engine?.startsWith(want))?.engine})`);
    await waitCached(server, json.id, map);
    const file = path.join(dir, `pool-${tabs}-${engines}-${h}.mp4`);
    fs.writeFileSync(file, Buffer.from(await (await fetch(`${server.url}/api/contents/${json.id}/export.mp4?rendition=${h}p`)).arrayBuffer()));
    const st = await Promise.all(ts.map((t) => t.page.evaluate(() => (window as any).shardcastEncoder.state as { fetchMs: number; encodeMs: number; jobsDone: number })));
    return {
      ms,
      bytes: states.reduce((a, x) => a + (x.size ?? 0), 0),
      psnr: psnr(file, source, w, h),
      fetchMs: st.reduce((a, x) => a + x.fetchMs, 0),
      encodeMs: st.reduce((a, x) => a + x.encodeMs, 0),
      jobs: st.reduce((a, x) => a + x.jobsDone, 0),
    };
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await server.destroy();
  }
}

/**
 * h. WebCodecs H.264 (OpenH264, with its bitrate scale) against ffmpeg.wasm
 * x264 veryfast, both through the pool on the same 20 s clip: one tab each at
 * 360p and 720p (fps, bytes, PSNR); then two WebCodecs tabs against native
 * ffmpeg (libx264 veryfast, 2 threads, rendition bitrate, one 20 s GOP) on
 * this machine at 720p: wall time as a ratio, PSNR of both.
 */
const webcodecs: Bench = async (runIndex) => {
  const source = await fixture('bench-720p');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-wc-'));
  const browser = await launchBrowser();
  const out: Sample[] = [];
  const frames = 600;
  try {
    if (WC_SCALES) {
      for (const scale of WC_SCALES) {
        for (const rung of WEBCODECS_RUNGS) {
          const wc = await poolEncode(browser, source, 1, 'ffmpeg-wasm,webcodecs', rung, dir, `&webcodecsH264BitrateScale=${scale}`);
          out.push(
            { metric: `WebCodecs ${rung[0]}x${rung[1]}, bitrate x${scale}: PSNR`, unit: 'dB', value: wc.psnr },
            { metric: `WebCodecs ${rung[0]}x${rung[1]}, bitrate x${scale}: bytes`, unit: 'kB', value: wc.bytes / 1000 },
          );
        }
      }
      return out;
    }
    // The one-tab ffmpeg.wasm encodes take most of this bench (~80 s at 720p): they run in the
    // first run only, which keeps `npm run bench` under 20 minutes. Their bytes and PSNR are the
    // same every run (ffmpeg.wasm is deterministic); bench a repeats ffmpeg.wasm's speed.
    for (const rung of runIndex === 0 ? WEBCODECS_RUNGS : []) {
      const [w, h] = rung;
      const ff = await poolEncode(browser, source, 1, 'ffmpeg-wasm', rung, dir);
      const wc = await poolEncode(browser, source, 1, 'ffmpeg-wasm,webcodecs', rung, dir);
      out.push(
        { metric: `1 tab ${w}x${h}: ffmpeg.wasm fps (pool wall time)`, unit: 'fps', value: frames / (ff.ms / 1000) },
        { metric: `1 tab ${w}x${h}: WebCodecs fps (pool wall time)`, unit: 'fps', value: frames / (wc.ms / 1000) },
        { metric: `1 tab ${w}x${h}: WebCodecs / ffmpeg.wasm speed`, unit: 'ratio', value: ff.ms / wc.ms },
        { metric: `1 tab ${w}x${h}: ffmpeg.wasm bytes`, unit: 'kB', value: ff.bytes / 1000 },
        { metric: `1 tab ${w}x${h}: WebCodecs bytes`, unit: 'kB', value: wc.bytes / 1000 },
        { metric: `1 tab ${w}x${h}: ffmpeg.wasm PSNR`, unit: 'dB', value: ff.psnr },
        { metric: `1 tab ${w}x${h}: WebCodecs PSNR`, unit: 'dB', value: wc.psnr },
      );
    }
    const rung = WEBCODECS_RUNGS[1];
    const [w, h, bitrate] = rung;
    const poolWc = await poolEncode(browser, source, 2, 'ffmpeg-wasm,webcodecs', rung, dir);
    const nativeFile = path.join(dir, 'native-720.mp4');
    const rate = ['-b:v', String(bitrate), '-maxrate', String(Math.round(bitrate * 1.5)), '-bufsize', String(bitrate * 2)];
    const n0 = performance.now();
    run(['-i', source, '-an', ...x264Args(w, h, rate, ['-g', '600']), '-threads', '2', '-f', 'mp4', nativeFile]);
    const nativeMs = performance.now() - n0;
    const nativePsnr = psnr(nativeFile, source, w, h);
    out.push(
      { metric: `2 WebCodecs tabs, ${w}x${h}: pool wall time`, unit: 's', value: poolWc.ms / 1000 },
      { metric: `native ffmpeg x264 veryfast 2 threads, ${w}x${h}: wall time`, unit: 's', value: nativeMs / 1000 },
      { metric: `2 WebCodecs tabs / native (2 threads), ${w}x${h}: speed`, unit: 'ratio', value: nativeMs / poolWc.ms, note: '> 1: the pool is faster' },
      { metric: `2 WebCodecs tabs, ${w}x${h}: PSNR`, unit: 'dB', value: poolWc.psnr },
      { metric: `native, ${w}x${h}: PSNR`, unit: 'dB', value: nativePsnr },
      { metric: `2 WebCodecs tabs, ${w}x${h}: time in fetch (both tabs)`, unit: 's', value: poolWc.fetchMs / 1000 },
      { metric: `2 WebCodecs tabs, ${w}x${h}: time in decode+encode+mux (both tabs)`, unit: 's', value: poolWc.encodeMs / 1000 },
      { metric: `2 WebCodecs tabs, ${w}x${h}: jobs`, unit: 'jobs', value: poolWc.jobs },
    );
    return out;
  } finally {
    await browser.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

const BENCHES: Record<string, { title: string; run: Bench; maxRuns?: number }> = {
  encoding: { title: 'a/d. Encoding', run: encoding },
  pool: { title: 'b/c. Pool', run: pool },
  delivery: { title: 'e. Delivery', run: delivery },
  failover: { title: 'f. Failover', run: failover },
  // A 100 s simulation whose figures barely move between runs (3 runs: 0 lost each, busiest holder 131 req/s each).
  churn: { title: 'g. Churn (simulated pool)', run: churn, maxRuns: 1 },
  webcodecs: { title: 'h. WebCodecs H.264', run: webcodecs },
};

// ---------------------------------------------------------------- report

function machine(): string[] {
  const chromium = (() => {
    try {
      return execFileSync(process.env.SHARDCAST_CHROMIUM || 'chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const pkg = (name: string) => JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../../node_modules', name, 'package.json'), 'utf8')).version as string;
  return [
    `- CPU: ${os.cpus()[0]?.model ?? 'unknown'} × ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `- ${chromium}; Node ${process.version}; @ffmpeg/core ${pkg('@ffmpeg/core')}; simple-peer ${pkg('simple-peer')}; mediabunny ${pkg('mediabunny')}`,
    `- ${new Date().toISOString()}, up to ${RUNS} runs per row (the runs column says how many)`,
  ];
}

async function main(): Promise<void> {
  const results: { bench: string; metric: string; unit: string; values: number[]; notes: string[] }[] = [];
  for (const [id, b] of Object.entries(BENCHES)) {
    if (ONLY && !ONLY.includes(id)) continue;
    for (let run = 0; run < Math.min(RUNS, b.maxRuns ?? RUNS); run++) {
      const t0 = Date.now();
      const samples = await b.run(run);
      console.log(`${b.title} run ${run + 1}/${RUNS} (${((Date.now() - t0) / 1000).toFixed(0)} s): ${samples.map((s) => `${s.metric} ${s.value.toFixed(2)} ${s.unit}`).join('; ')}`);
      for (const s of samples) {
        let r = results.find((x) => x.bench === b.title && x.metric === s.metric);
        if (!r) results.push((r = { bench: b.title, metric: s.metric, unit: s.unit, values: [], notes: [] }));
        r.values.push(s.value);
        if (s.note) r.notes.push(s.note);
      }
    }
  }
  const fmt = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));
  const lines = [
    '# shardcast benchmark results',
    '',
    'Made by `npm run bench` (tests/bench/suite.ts). Figures are medians with min–max over the runs; ratios are taken within one run.',
    '',
    ...machine(),
    '',
    '| bench | measurement | median | min–max | runs | unit | notes |',
    '|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.bench} | ${r.metric} | ${fmt(quantile(r.values, 0.5))} | ${fmt(Math.min(...r.values))}–${fmt(Math.max(...r.values))} | ${r.values.length} | ${r.unit} | ${r.notes[0] ?? ''} |`),
    '',
  ];
  const md = lines.join('\n');
  console.log(`\n${md}`);
  fs.writeFileSync(path.join(OUT_DIR, 'RESULTS.md'), md);
  fs.writeFileSync(path.join(OUT_DIR, 'results.json'), JSON.stringify({ at: new Date().toISOString(), runs: RUNS, results }, null, 2));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
