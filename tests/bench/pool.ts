import fs from 'node:fs';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { launchBrowser, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { adminHeaders, startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { segmentName, videoJobArgs } from '../../src/encoder/ffmpegArgs.ts';
import type { Job } from '../../src/shared/protocol.ts';
import { effectiveVideoSpec, mapEnd } from '../../src/shared/shardMap.ts';
import { type Bench, waitReady } from './common.ts';
import { benchTab, tabExec } from './encoding.ts';

/**
 * Encoding benches measure the encoders' work, so cross-checks (which re-encode
 * a sample of jobs on purpose: all of a new encoder's first 3 jobs, then at
 * least 1 in 10) are off there; the byte check before acceptance stays on.
 */
export const NO_CROSS_CHECKS = { verifySampleRate: 0, verifyNewEncoderJobs: 0 } as const;

/** What the encoder tabs did during one pool encode, from their own clocks and counters. */
export interface PoolSide {
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
export async function recordJobs(t: TrackedPage): Promise<void> {
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

export const tabCounters = (t: TrackedPage) =>
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
export async function poolSide(server: TestServer, tabs: TrackedPage[], bytes: Uint8Array, ladder: unknown, keep = false): Promise<PoolSide> {
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
export const pool: Bench = async () => {
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
    const mono = await tabExec(a, input, videoJobArgs(job, Number(res.headers.get('x-slice-start')), '$IN', { preset: 'veryfast' }, '$OUTshard_%04d.mp4'), [
      segmentName(job.shards.length - 1),
    ]);

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
      {
        metric: 'same tab, the job command once over the whole clip (bytes in the tab)',
        unit: 's',
        value: mono.ms / 1000,
        note: `${job.shards.length} shards, key frame every shard, x264 veryfast`,
      },
      { metric: 'sharding overhead: pool / one exec', unit: 'ratio', value: one('wallMs') / mono.ms },
      { metric: 'pool, 2 tabs: first job to all accepted', unit: 's', value: two.wallMs / 1000, note: `${two.jobs} jobs` },
      {
        metric: 'speed-up, 2 tabs / 1 tab (alternated 1, 2, 1 on one server)',
        unit: 'ratio',
        value: one('wallMs') / two.wallMs,
        note: `1 tab: ${(oneA.wallMs / 1000).toFixed(2)} s then ${(oneB.wallMs / 1000).toFixed(2)} s`,
      },
    ];
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await browser.close();
    await server.destroy();
  }
};

export async function deleteContent(server: TestServer, id: string): Promise<void> {
  const res = await fetch(`${server.url}/api/contents/${id}`, { method: 'DELETE', headers: adminHeaders() });
  if (!res.ok) throw new Error(`DELETE ${id}: HTTP ${res.status}`);
}
