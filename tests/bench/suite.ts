/**
 * `npm run bench`: measurements in real headless Chromium, side by side in one
 * run, repeated (--runs N, default 3) and reported as median and min/max.
 * Prints a markdown table and writes tests/bench/RESULTS.md and results.json.
 *
 * Run inside the private network namespace by tests/harness/run.ts --bench.
 * Pick benches with --only delivery,failover: their rows replace those benches'
 * rows in RESULTS.md and results.json, and every other bench keeps its last
 * figures with their own date and run count. Each bench is a function that
 * returns rows; add new ones to BENCHES, and say how a new ratio is measured
 * in HOW_MEASURED.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, newPage, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { adminHeaders, startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { segmentName, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import type { Job } from '../../src/shared/protocol.ts';
import { effectiveVideoSpec, mapEnd } from '../../src/shared/shardMap.ts';
import { formatReport, runChurn } from '../sim/churn.ts';

interface Sample {
  metric: string;
  unit: string;
  /** null (or NaN) when the run had nothing to measure: the table says "no samples", never NaN. */
  value: number | null;
  /** Context for the reader (no thresholds live here). */
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

/** Polls until every variant of content `id` is ready (every `pollMs`); its map. */
async function waitReady(server: TestServer, id: string, timeoutMs = 300_000, pollMs = 250): Promise<ShardMap> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = (await (await fetch(`${server.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
    if (c.status === 'ready') return c.shardMap;
    if (Date.now() > end) throw new Error(`content ${id} was not encoded in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
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
    // biome-ignore lint/security/noGlobalEval: the page gets the helper's source text (a function cannot cross page.evaluate).
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
    // biome-ignore lint/security/noGlobalEval: the page gets the helper's source text (a function cannot cross page.evaluate).
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
 * 200 simulated encoders and 500 simulated viewers for 90 s (tests/sim/churn.ts)
 * over 4 contents at the start and one more uploaded every 2 s for the first
 * 67 s, so work keeps arriving and departures land on running jobs. Encoders
 * run 0.3-1.5x real time (ffmpeg.wasm: ~0.7x at 720p, ~1.3x at 360p, bench a).
 * 20%/min random departures (half of them silent), reloads, joins, and a
 * quarter of the pool leaving at once at 45 s. Heartbeats at the server's
 * defaults. The full table goes to the console.
 */
const churn: Bench = async (run) => {
  const r = await runChurn({
    encoders: 200,
    viewers: 500,
    contents: 4,
    publishEverySeconds: 2,
    speedMin: 0.3,
    speedMax: 1.5,
    seconds: 90,
    settleSeconds: 20,
    viewerRamp: 20,
    batchAt: 45,
    heartbeatMs: 2000,
    heartbeatTimeoutMs: 6000,
    seed: run + 1,
  });
  console.log(formatReport(r));
  const departures = Object.values(r.requeue.departures).reduce((a, b) => a + b, 0);
  const kicked = `${r.requeue.departures.kicked} live encoders dropped by the server`;
  const withWork = `${r.requeue.reassignMs.n} shards from ${r.requeue.departuresWithWork} departures with work in flight; ${kicked}`;
  const dist = (d: { n: number; median: number; p95: number }, k: 'median' | 'p95') => (d.n > 0 ? d[k] : null);
  const top = [...r.load.byContent].sort((a, b) => b.requests - a.requests)[0];
  const spread = top
    ? `content ${r.load.byContent.indexOf(top)} (${top.fixture}): ${top.requests} requests over ${top.holders} holders; the first 4 contents x${r.load.byContent.slice(0, 4).map((c) => c.busiestToMean.toFixed(1)).join(', x')}`
    : 'no content was watched';
  return [
    { metric: 'completion: every variant of every content ready', unit: 's', value: r.completionSeconds, note: r.completionSeconds === null ? 'never complete' : `${r.contents.length} contents, the last uploaded at ${Math.floor((r.options.seconds * 0.75) / r.options.publishEverySeconds) * r.options.publishEverySeconds} s` },
    { metric: 'shards lost at the end', unit: 'shards', value: r.lost.atEnd, note: `${r.lost.orphanedDuringRun} orphaned during the run, ${r.lost.recovered} recovered` },
    { metric: 'departures with a job running or queued', unit: 'departures', value: r.requeue.departuresWithWork, note: `of ${departures}; they left ${r.requeue.shardsLeftUnfinished} unfinished shards` },
    { metric: 're-queue delay (departure with work to reassigned), median', unit: 'ms', value: dist(r.requeue.reassignMs, 'median'), note: withWork },
    { metric: 're-queue delay (departure with work to reassigned), p95', unit: 'ms', value: dist(r.requeue.reassignMs, 'p95'), note: withWork },
    { metric: 'silent tab noticed after (timeout 6000 ms), p95', unit: 'ms', value: dist(r.requeue.silentDetectMs, 'p95') },
    { metric: 'busiest holder load, most requested content', unit: 'req/s', value: top ? top.busiestRps : null, note: top ? `mean ${top.meanRps.toFixed(2)} req/s per holder of that content` : undefined },
    { metric: 'busiest holder / mean holder of the content watched', unit: 'ratio', value: top && top.meanRps > 0 ? top.busiestToMean : null, note: spread },
    { metric: 'viewer shards missed (skipped)', unit: 'shards', value: r.viewers.missesUnencoded + r.viewers.missesNoHolder, note: `of ${r.viewers.fromPeers + r.viewers.fromCache} fetched` },
    { metric: 'locate round trip, p95', unit: 'ms', value: dist(r.viewers.locateRttMs, 'p95') },
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
 * with the same settings (-threads 2, and -threads 1), on the same slice;
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
      const native = timeNative(['-threads', '2']);
      const native1 = timeNative(['-threads', '1']);
      const fps = frames / (tab.ms / 1000);
      out.push(
        { metric: `tab ffmpeg.wasm x264 fps, ${w}x${h}`, unit: 'fps', value: fps },
        { metric: `native ffmpeg x264 fps, ${w}x${h} (-threads 2)`, unit: 'fps', value: frames / (native / 1000) },
        { metric: `tab / native (-threads 2), ${w}x${h}`, unit: 'ratio', value: native / tab.ms },
        { metric: `tab / native (-threads 1), ${w}x${h}`, unit: 'ratio', value: native1 / tab.ms },
        { metric: `tab multi-thread core (-threads 2) fps, ${w}x${h}`, unit: 'fps', value: frames / (tabMt.ms / 1000) },
        { metric: `multi-thread / single-thread core, ${w}x${h}`, unit: 'ratio', value: tab.ms / tabMt.ms, note: 'two tabs of one browser, one at a time' },
        { metric: `tab multi-thread / native (-threads 2), ${w}x${h}`, unit: 'ratio', value: native / tabMt.ms },
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
 * Encoding benches measure the encoders' work, so cross-checks (which re-encode
 * a sample of jobs on purpose: all of a new encoder's first 3 jobs, then at
 * least 1 in 10) are off there; the byte check before acceptance stays on.
 */
const NO_CROSS_CHECKS = { verifySampleRate: 0, verifyNewEncoderJobs: 0 } as const;

/** What the encoder tabs did during one pool encode, from their own clocks and counters. */
interface PoolSide {
  /** From the first job starting in a tab to every shard accepted (polled every 50 ms), ms. */
  wallMs: number;
  jobs: number;
  /** Sums over the tabs, ms: source-slice fetch, encode (ffmpeg exec), the rest of each job (hashing, storing, upload and the server's check). */
  fetchMs: number;
  encodeMs: number;
  restMs: number;
  /** Tab time outside jobs within wallMs (tabs x wallMs - time in jobs): waiting for the next job, ms. */
  waitMs: number;
  map: ShardMap;
}

/** Starts recording job start and end times in an encoder tab (Date.now(), the clock Node reads too). */
async function recordJobs(t: TrackedPage): Promise<void> {
  await t.page.evaluate('window.__name ??= (f) => f');
  await t.page.evaluate(() => {
    const w = window as any;
    if (w.benchJobs) return;
    const jobs: { id: string; start: number; end?: number }[] = (w.benchJobs = []);
    const enc = w.shardcastEncoder;
    enc.on('update', (st: { current?: { id: string; startedAt: number } }) => {
      if (st.current && !jobs.some((j) => j.id === st.current!.id)) jobs.push({ id: st.current.id, start: st.current.startedAt });
    });
    enc.on('job-finished', (e: { jobId: string }) => {
      const j = jobs.find((x) => x.id === e.jobId);
      if (j) j.end = Date.now();
    });
  });
}

const tabCounters = (t: TrackedPage) =>
  t.page.evaluate(() => {
    const w = window as any;
    const st = w.shardcastEncoder.state as { fetchMs: number; encodeMs: number; jobsDone: number };
    return { fetchMs: st.fetchMs, encodeMs: st.encodeMs, jobsDone: st.jobsDone, jobs: (w.benchJobs as { id: string; start: number; end?: number }[]).slice() };
  });

/**
 * Publishes `bytes` (one 360p H.264 rendition) on `server` and times the pool
 * of `tabs` encoding it, from the first job's start (upload and probe excluded:
 * the one-exec side has neither) to every shard accepted. Deletes the content
 * after (unless `keep`), so its shards cost the next side nothing.
 */
async function poolSide(server: TestServer, tabs: TrackedPage[], bytes: Uint8Array, ladder: unknown, keep = false): Promise<PoolSide> {
  for (const t of tabs) await recordJobs(t);
  const before = await Promise.all(tabs.map(tabCounters));
  const { json } = await upload(server.url, bytes, `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
  const map = await waitReady(server, json.id, 300_000, 50);
  const end = Date.now();
  const after = await Promise.all(tabs.map(tabCounters));
  const jobs = after.flatMap((a, i) => a.jobs.filter((j) => !before[i]!.jobs.some((b) => b.id === j.id)));
  if (jobs.length === 0) throw new Error('no job started in the tabs');
  const t0 = Math.min(...jobs.map((j) => j.start));
  const wallMs = end - t0;
  const inJobs = jobs.reduce((a, j) => a + ((j.end ?? end) - j.start), 0);
  const fetchMs = after.reduce((a, x, i) => a + x.fetchMs - before[i]!.fetchMs, 0);
  const encodeMs = after.reduce((a, x, i) => a + x.encodeMs - before[i]!.encodeMs, 0);
  if (!keep) await deleteContent(server, json.id);
  return { wallMs, jobs: jobs.length, fetchMs, encodeMs, restMs: inJobs - fetchMs - encodeMs, waitMs: tabs.length * wallMs - inJobs, map };
}

/**
 * b. Sharding overhead: the bench clip through the pool with one tab (0.3 s
 * shards, one 360p rendition, jobs of ~3 s) against the same tab running the
 * pool's own job command (videoJobArgs: same x264 settings, a key frame and a
 * segment every shard) once over the whole clip, its bytes already in the tab.
 * The pool side starts at its first job (the source is on the server, probed);
 * its parts: source fetch, encode, the rest of each job, waits between jobs.
 * c. Scaling: one tab and two tabs alternate on one server (1, 2, 1; fresh
 * contents of the same clip, each deleted after), the ratio within the run.
 */
const pool: Bench = async () => {
  const bytes = new Uint8Array(fs.readFileSync(await fixture('bench-720p')));
  const ladder = [{ id: '360p', video: { codec: 'h264', width: 640, height: 360, bitrate: 800_000 } }];
  const server = await startTestServer(NO_CROSS_CHECKS);
  const browser = await launchBrowser();
  const pages: TrackedPage[] = [];
  try {
    const a = await benchTab(browser, server, pages);
    const oneA = await poolSide(server, [a], bytes, ladder, true);

    // The one-exec side: the pool's command for one job spanning every shard, on the video track the
    // server slices for it (as for any job), placed in the tab before the clock starts.
    const map = oneA.map;
    const job = {
      id: 'one-exec',
      contentId: map.contentId,
      rendition: '360p',
      kind: 'video',
      video: effectiveVideoSpec(map, map.shards[0]!, '360p'),
      shards: map.shards.map((s) => ({ index: s.index, start: s.start, duration: s.duration, frames: s.frames, firstFrame: 0 })),
      sourceUrl: '',
      start: map.shards[0]!.start,
      end: mapEnd(map),
      deadline: 0,
      upload: false,
    } satisfies Job;
    const res = await fetch(`${server.url}/api/contents/${map.contentId}/source?start=${job.start}&end=${job.end}&tracks=video`, { headers: adminHeaders() });
    if (!res.ok) throw new Error(`source of the whole clip: HTTP ${res.status}`);
    const input = new Uint8Array(await res.arrayBuffer());
    await deleteContent(server, map.contentId);
    const mono = await tabExec(a, input, videoJobArgs(job, Number(res.headers.get('x-slice-start')), '$IN', { preset: 'veryfast' }, '$OUTshard_%04d.mp4'), [segmentName(job.shards.length - 1)]);

    const b = await benchTab(browser, server, pages);
    const two = await poolSide(server, [a, b], bytes, ladder);
    await b.context.close();
    const oneB = await poolSide(server, [a], bytes, ladder);

    const one = (k: 'wallMs' | 'fetchMs' | 'encodeMs' | 'restMs' | 'waitMs') => (oneA[k] + oneB[k]) / 2;
    const parts = `1 tab, mean of its 2 encodes; ${oneA.jobs} jobs`;
    return [
      { metric: 'pool, 1 tab: 20 s 360p clip, first job to all accepted', unit: 's', value: one('wallMs') / 1000, note: parts },
      { metric: 'pool, 1 tab: part in source fetch', unit: 's', value: one('fetchMs') / 1000 },
      { metric: 'pool, 1 tab: part in encode (ffmpeg exec)', unit: 's', value: one('encodeMs') / 1000 },
      { metric: 'pool, 1 tab: part in hash, store, upload and server check', unit: 's', value: one('restMs') / 1000 },
      { metric: 'pool, 1 tab: part waiting between jobs', unit: 's', value: one('waitMs') / 1000 },
      { metric: 'same tab, the job command once over the whole clip (bytes in the tab)', unit: 's', value: mono.ms / 1000, note: `${job.shards.length} shards, key frame every shard, x264 veryfast` },
      { metric: 'sharding overhead: pool / one exec', unit: 'ratio', value: one('wallMs') / mono.ms },
      { metric: 'pool, 2 tabs: first job to all accepted', unit: 's', value: two.wallMs / 1000, note: `${two.jobs} jobs` },
      { metric: 'speed-up, 2 tabs / 1 tab (alternated 1, 2, 1 on one server)', unit: 'ratio', value: one('wallMs') / two.wallMs, note: `1 tab: ${(oneA.wallMs / 1000).toFixed(2)} s then ${(oneB.wallMs / 1000).toFixed(2)} s` },
    ];
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await browser.close();
    await server.destroy();
  }
};

async function deleteContent(server: TestServer, id: string): Promise<void> {
  const res = await fetch(`${server.url}/api/contents/${id}`, { method: 'DELETE', headers: adminHeaders() });
  if (!res.ok) throw new Error(`DELETE ${id}: HTTP ${res.status}`);
}

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
  /** From the first job starting in a tab to every shard accepted (upload and probe excluded), ms. */
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
 * offer `engines`, one H.264 rendition: wall time from the first job's start
 * to every shard accepted, accepted bytes, and PSNR of the server's export against the source
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
      await recordJobs(t);
      ts.push(t);
    }
    const ladder = [{ id: `${h}p`, video: { codec: 'h264', width: w, height: h, bitrate } }];
    const { json } = await upload(server.url, fs.readFileSync(source), `?renditions=${encodeURIComponent(JSON.stringify(ladder))}`);
    const map = await waitReady(server, json.id, 300_000, 50);
    const end = Date.now();
    const jobs = (await Promise.all(ts.map(tabCounters))).flatMap((c) => c.jobs);
    const ms = end - Math.min(...jobs.map((j) => j.start));
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
 * 360p and 720p (fps, bytes, PSNR; pool time from the first job to all
 * accepted); then two WebCodecs tabs against native ffmpeg (libx264 veryfast,
 * -threads 2, one 20 s GOP) on this machine at 720p at equal PSNR (nativeAtPsnr):
 * wall time as a ratio, PSNR and bytes of both.
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
    const [w, h] = rung;
    const poolWc = await poolEncode(browser, source, 2, 'ffmpeg-wasm,webcodecs', rung, dir);
    const native = nativeAtPsnr(source, w, h, poolWc.psnr, dir);
    const equal = `native at CRF ${native.crf.toFixed(2)}: ${native.psnr.toFixed(2)} dB against the tabs' ${poolWc.psnr.toFixed(2)} dB`;
    out.push(
      { metric: `2 WebCodecs tabs, ${w}x${h}: pool wall time (first job to all accepted)`, unit: 's', value: poolWc.ms / 1000 },
      { metric: `native ffmpeg x264 veryfast -threads 2, ${w}x${h}, equal PSNR: wall time`, unit: 's', value: native.ms / 1000, note: equal },
      { metric: `2 WebCodecs tabs / native (-threads 2), ${w}x${h}, equal PSNR: speed`, unit: 'ratio', value: native.ms / poolWc.ms, note: '> 1: the pool is faster' },
      { metric: `2 WebCodecs tabs, ${w}x${h}: PSNR`, unit: 'dB', value: poolWc.psnr },
      { metric: `native, ${w}x${h}: PSNR`, unit: 'dB', value: native.psnr, note: equal },
      { metric: `2 WebCodecs tabs, ${w}x${h}: bytes`, unit: 'kB', value: poolWc.bytes / 1000 },
      { metric: `native, ${w}x${h}, equal PSNR: bytes`, unit: 'kB', value: native.bytes / 1000, note: 'one 20 s GOP' },
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

/** Where the CRF search of nativeAtPsnr starts: the last run's answer. */
let nativeCrfGuess = 23;

/** PSNR tolerance of "equal PSNR", dB. */
const EQUAL_PSNR_DB = 0.3;

/**
 * Native ffmpeg (libx264 veryfast, the job's x264 settings, -threads 2, one
 * 20 s GOP) at the CRF whose PSNR is within EQUAL_PSNR_DB/2 of `targetDb`,
 * found by the secant method on (CRF, PSNR); the wall time, bytes and PSNR of
 * that encode (read source, decode, scale, encode, mux: the phases a pool job
 * has after its slice is fetched). Throws if no CRF gets within EQUAL_PSNR_DB.
 */
function nativeAtPsnr(source: string, w: number, h: number, targetDb: number, dir: string): { crf: number; ms: number; bytes: number; psnr: number } {
  const file = path.join(dir, `native-${h}.mp4`);
  const encode = (crf: number) => {
    const t0 = performance.now();
    run(['-i', source, '-an', ...x264Args(w, h, ['-crf', crf.toFixed(2)], ['-g', '600']), '-threads', '2', '-f', 'mp4', file]);
    const ms = performance.now() - t0;
    return { crf, ms, bytes: fs.statSync(file).size, psnr: psnr(file, source, w, h) };
  };
  const tries = [encode(nativeCrfGuess)];
  // About 0.5 dB per CRF step on this clip: the first step, before there are two points.
  tries.push(encode(Math.min(51, Math.max(0, nativeCrfGuess + (tries[0]!.psnr - targetDb) / 0.5))));
  for (let i = 0; i < 4; i++) {
    const best = [...tries].sort((a, b) => Math.abs(a.psnr - targetDb) - Math.abs(b.psnr - targetDb));
    if (Math.abs(best[0]!.psnr - targetDb) <= EQUAL_PSNR_DB / 2) break;
    const [a, b] = best;
    const slope = (b!.psnr - a!.psnr) / (b!.crf - a!.crf || 1);
    const next = a!.crf + (targetDb - a!.psnr) / (slope < 0 ? slope : -0.5);
    tries.push(encode(Math.min(51, Math.max(0, next))));
  }
  const best = [...tries].sort((a, b) => Math.abs(a.psnr - targetDb) - Math.abs(b.psnr - targetDb))[0]!;
  if (Math.abs(best.psnr - targetDb) > EQUAL_PSNR_DB) throw new Error(`no native CRF within ${EQUAL_PSNR_DB} dB of ${targetDb.toFixed(2)} dB: ${tries.map((t) => `CRF ${t.crf.toFixed(2)} ${t.psnr.toFixed(2)} dB`).join(', ')}`);
  nativeCrfGuess = best.crf;
  // The matched encode timed once more, so a first-run cold cache does not land in the figure.
  const timed = encode(best.crf);
  return timed;
}

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

function software(): string {
  const chromium = (() => {
    try {
      return execFileSync(process.env.SHARDCAST_CHROMIUM || 'chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const pkg = (name: string) => JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../../node_modules', name, 'package.json'), 'utf8')).version as string;
  return `${chromium}; Node ${process.version}; @ffmpeg/core ${pkg('@ffmpeg/core')}; @roamhq/wrtc ${pkg('@roamhq/wrtc')} (Node peers); mediabunny ${pkg('mediabunny')}`;
}

/** One row as results.json keeps it: a value and a note per run (null: no sample / no note). */
interface Row {
  metric: string;
  unit: string;
  values: (number | null)[];
  notes: (string | null)[];
}

/** One bench's last run as results.json keeps it; benches not re-run keep theirs. */
interface BenchResult {
  id: string;
  title: string;
  /** When it ran (ISO), how many runs, how long they took. */
  at: string;
  runs: number;
  seconds: number;
  /** Browser and library versions it ran with. */
  software: string;
  rows: Row[];
}

interface ResultsFile {
  updated: string;
  /** Which benches the last `npm run bench` ran (all of them unless --only). */
  lastRun: string[];
  benches: BenchResult[];
}

/** results.json as the previous run left it; the old flat format (one date for every row) is read too. */
function readPrevious(file: string): BenchResult[] {
  let j: any;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
  if (Array.isArray(j?.benches)) return j.benches as BenchResult[];
  if (!Array.isArray(j?.results)) return [];
  const out: BenchResult[] = [];
  for (const r of j.results as { bench: string; metric: string; unit: string; values: number[]; notes: string[] }[]) {
    const id = Object.entries(BENCHES).find(([, b]) => b.title === r.bench)?.[0] ?? r.bench;
    let b = out.find((x) => x.id === id);
    if (!b) out.push((b = { id, title: r.bench, at: j.at, runs: 0, seconds: 0, software: 'not recorded', rows: [] }));
    b.runs = Math.max(b.runs, r.values.length);
    // The old format kept notes only where given, not per run: its first note stands for every run.
    b.rows.push({ metric: r.metric, unit: r.unit, values: r.values.map((v) => (Number.isFinite(v) ? v : null)), notes: r.values.map(() => r.notes[0] ?? null) });
  }
  return out;
}

const fmt = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));

/** Median, min-max and the note of the run whose value is the median (the nearer one of the two middles for an even count). */
function summarise(r: Row): { median: string; range: string; runs: string; note: string } {
  const xs = r.values.filter((v): v is number => v !== null);
  if (xs.length === 0) return { median: 'no samples', range: '–', runs: `0 of ${r.values.length}`, note: r.notes.find((n) => n) ?? '' };
  const med = quantile(xs, 0.5);
  let at = -1;
  r.values.forEach((v, i) => {
    if (v !== null && (at < 0 || Math.abs(v - med) < Math.abs(r.values[at]! - med))) at = i;
  });
  const runs = xs.length === r.values.length ? String(xs.length) : `${xs.length} of ${r.values.length}`;
  return { median: fmt(med), range: `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`, runs, note: r.notes[at] ?? '' };
}

/**
 * How each ratio (and each figure that is easy to misread) is measured, for
 * RESULTS.md: kept here, beside the code that measures it.
 */
const HOW_MEASURED = [
  '- **tab / native** (a): the same x264 command (veryfast, high, no B-frames, 300 frames of the bench clip to a null output) in an ffmpeg.wasm tab and in native ffmpeg with `-threads 2` (and `-threads 1`); exec time in the tab against process wall time natively.',
  '- **multi-thread / single-thread core** (a): the same command in two tabs of one browser, one at a time, the multi-thread core with `-threads 2`.',
  '- **bytes, key frames / 2 s GOP** (d): shard-like key frame spacing encoded in the tab, against a native 2 s GOP curve at CRF 19-27 (one thread: the same bytes as the tab, checked in a row), at equal CRF and interpolated at equal PSNR.',
  '- **sharding overhead: pool / one exec** (b): one tab; pool side from its first job starting (the source uploaded and probed before) to every shard accepted, mean of two encodes; one-exec side: the pool\'s own job command (src/encoder/ffmpegArgs.ts: same x264 settings, a key frame and a segment every shard) once over the whole clip, the bytes already in the tab, exec time. The pool side\'s parts (source fetch, encode, hash/store/upload/check, waits between jobs) are rows of their own.',
  '- **speed-up, 2 tabs / 1 tab** (c): one server, one browser; 1 tab, 2 tabs, 1 tab in turn on fresh contents of the same clip (each deleted after); the mean of the two 1-tab times over the 2-tab time, within the run. Times as in b.',
  '- **shard protocol / raw data channel** (e): 16 MiB over our protocol (hash checked) and over a bare RTCDataChannel between the same two pages, warm, alternating, median of 3 each.',
  '- **2 WebCodecs tabs / native** (h): pool side as in b (first job to every shard accepted: slice fetch, decode, encode, mux, hash, upload, check); native side: libx264 veryfast `-threads 2`, one 20 s GOP, from the source file to the MP4 written, at the CRF whose PSNR is within 0.15 dB of the tabs\' (searched, then timed once more); PSNR and bytes of both are rows. 1-tab rows time both engines the same way.',
  '- **re-queue delay** (g): from an encoder leaving (closing or going silent) with a job running or queued to each of its unfinished shards appearing in another encoder\'s job; the note says how many departures had work. Uploads keep arriving during the run so departures land on running jobs.',
  '- **busiest holder / mean holder** (g): for the most requested content, over the encoders that held some shard of it for at least 5 s of the viewing phase: viewer requests for that content served per second held; busiest over mean. Simulated viewers try holders as the watch page does (the server\'s list, least busy first, shuffled by a random comparator, then peers already connected first, at most 8 connections).',
];

async function main(): Promise<void> {
  const fresh: BenchResult[] = [];
  for (const [id, b] of Object.entries(BENCHES)) {
    if (ONLY && !ONLY.includes(id)) continue;
    const rows: Row[] = [];
    const runs = Math.min(RUNS, b.maxRuns ?? RUNS);
    const t0 = Date.now();
    for (let run = 0; run < runs; run++) {
      const r0 = Date.now();
      const samples = await b.run(run);
      console.log(`${b.title} run ${run + 1}/${runs} (${((Date.now() - r0) / 1000).toFixed(0)} s): ${samples.map((s) => `${s.metric} ${s.value === null || !Number.isFinite(s.value) ? 'no sample' : s.value.toFixed(2)} ${s.unit}`).join('; ')}`);
      for (const s of samples) {
        let r = rows.find((x) => x.metric === s.metric);
        // A row first seen in a later run had no sample in the earlier ones.
        if (!r) rows.push((r = { metric: s.metric, unit: s.unit, values: Array(run).fill(null), notes: Array(run).fill(null) }));
        r.values[run] = s.value !== null && Number.isFinite(s.value) ? s.value : null;
        r.notes[run] = s.note ?? null;
      }
    }
    for (const r of rows) while (r.values.length < runs) (r.values.push(null), r.notes.push(null));
    fresh.push({ id, title: b.title, at: new Date(t0).toISOString(), runs, seconds: Math.round((Date.now() - t0) / 1000), software: software(), rows });
  }
  // Merge: benches not run now keep their previous rows, date and run count.
  const previous = readPrevious(path.join(OUT_DIR, 'results.json'));
  const order = Object.keys(BENCHES);
  const merged = [...fresh, ...previous.filter((p) => !fresh.some((f) => f.id === p.id))].sort((a, b) => (order.indexOf(a.id) + 1 || 99) - (order.indexOf(b.id) + 1 || 99));
  const file: ResultsFile = { updated: new Date().toISOString(), lastRun: fresh.map((f) => f.id), benches: merged };
  const lines = [
    '# shardcast benchmark results',
    '',
    'Made by `npm run bench` (tests/bench/suite.ts). Figures are medians with min–max over the runs; ratios are taken within one run. The notes column shows the note of the run whose value is the median. "no samples": the run had nothing to measure for that row.',
    '',
    `- CPU: ${os.cpus()[0]?.model ?? 'unknown'} × ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `- Last written ${file.updated}; that run re-ran: ${fresh.map((f) => f.title).join(', ') || 'nothing'}${ONLY ? ` (--only ${ONLY.join(',')}; the other benches keep the figures of their own last run)` : ''}.`,
    '',
    '| bench | ran at | runs | took | software |',
    '|---|---|---|---|---|',
    ...merged.map((b) => `| ${b.title} | ${b.at} | ${b.runs} | ${b.seconds ? `${b.seconds} s` : '–'} | ${b.software} |`),
    '',
    '| bench | measurement | median | min–max | runs | unit | notes |',
    '|---|---|---|---|---|---|---|',
    ...merged.flatMap((b) =>
      b.rows.map((r) => {
        const x = summarise(r);
        return `| ${b.title} | ${r.metric} | ${x.median} | ${x.range} | ${x.runs} | ${r.unit} | ${x.note} |`;
      }),
    ),
    '',
    '## How each ratio is measured',
    '',
    ...HOW_MEASURED,
    '',
  ];
  const md = lines.join('\n');
  console.log(`\n${md}`);
  fs.writeFileSync(path.join(OUT_DIR, 'RESULTS.md'), md);
  fs.writeFileSync(path.join(OUT_DIR, 'results.json'), `${JSON.stringify(file, null, 2)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
