/**
 * Real-bytes helpers for server tests that drive the pool by hand: a test
 * peer finishes a job with shards native ffmpeg made from the job's own source
 * slice (tests/harness/nativeEncoder.ts), uploaded with the job's upload token
 * and reported like a tab does, so the byte check stays on. Also: joining
 * with a resumable identity, WebSocket upgrades with chosen headers, and a
 * strict reader of the Prometheus text at /metrics.
 */
import { createHash } from 'node:crypto';
import WebSocket from 'ws';
import type { RunningServer } from '../../signaling/server.ts';
import type { ShardKey } from '../../src/shared/shardMap.ts';
import type { Capabilities, Job } from '../../src/shared/protocol.ts';
import { encodeAudioJob } from './badShards.ts';
import { encodeJob, NATIVE_ENGINE } from './nativeEncoder.ts';
import { WsPeer } from './wsPeer.ts';

/** Capabilities of a native encoder: H.264 only, with a join-benchmark `speed` (x real time) when given. */
export function nativeCaps(maxJobs = 1, speed?: number): Capabilities {
  return { engines: [{ name: NATIVE_ENGINE, codecs: ['h264'], ...(speed !== undefined && { speed }) }], maxJobs };
}

/**
 * Encodes a video job natively, PUTs every shard with the job's token
 * (expecting 200), reports each, waits for every `shard-accepted`, then says
 * `job-done` (unless `done` is false: a tab that stops mid-job). Returns the
 * accepted hashes by shard index. Throws on any refusal.
 */
export async function completeJob(base: string, peer: WsPeer, job: Job, engine = NATIVE_ENGINE, done = true): Promise<Map<number, string>> {
  const shards = await encodeJob(base, job, 'honest');
  const out = new Map<number, string>();
  for (const [i, bytes] of shards.entries()) {
    const key = { contentId: job.contentId, rendition: job.rendition, index: job.shards[i]!.index };
    const res = await fetch(`${base}/api/contents/${key.contentId}/shards/${key.rendition}/${key.index}`, {
      method: 'PUT',
      body: bytes as Uint8Array<ArrayBuffer>,
      headers: { Authorization: `Bearer ${job.uploadToken}` },
    });
    if (res.status !== 200) throw new Error(`upload of ${key.index} refused: ${res.status} ${await res.text()}`);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const accepted = peer.next('shard-accepted', (m) => m.key.index === key.index && m.key.rendition === key.rendition, 30_000);
    peer.send({ type: 'shard-ready', jobId: job.id, key, sha256, size: bytes.byteLength, engine });
    await accepted;
    out.set(key.index, sha256);
  }
  if (done) peer.send({ type: 'job-done', jobId: job.id });
  return out;
}

/** Encodes an audio job the way a tab does, PUTs every shard with its lead and tail (expecting 200), reports each, waits for every acceptance, then says `job-done`. */
export async function completeAudioJob(base: string, peer: WsPeer, job: Job, engine = NATIVE_ENGINE): Promise<void> {
  for (const c of await encodeAudioJob(base, job)) {
    const key = { contentId: job.contentId, rendition: job.rendition, index: c.index };
    const res = await fetch(`${base}/api/contents/${key.contentId}/shards/${key.rendition}/${key.index}?lead=${c.lead}&tail=${c.tail}`, {
      method: 'PUT',
      body: c.bytes as Uint8Array<ArrayBuffer>,
      headers: { Authorization: `Bearer ${job.uploadToken}` },
    });
    if (res.status !== 200) throw new Error(`upload of audio ${key.index} refused: ${res.status} ${await res.text()}`);
    const accepted = peer.next('shard-accepted', (m) => m.key.index === key.index && m.key.rendition === key.rendition, 30_000);
    const sha256 = createHash('sha256').update(c.bytes).digest('hex');
    peer.send({ type: 'shard-ready', jobId: job.id, key, sha256, size: c.bytes.byteLength, engine, lead: c.lead, tail: c.tail });
    await accepted;
  }
  peer.send({ type: 'job-done', jobId: job.id });
}

/**
 * Encodes every shard variant of a content natively (video and audio jobs, one at a time, as the pool hands them
 * out) until the content is ready, calling `afterJob` after each job. Best with cross-checks off (verifySampleRate 0,
 * verifyNewEncoderJobs 0), so every job is new work. Throws on any refusal.
 */
export async function encodeContent(base: string, contentId: string, afterJob?: (job: Job) => Promise<void>): Promise<void> {
  const peer = await WsPeer.encoder(base, { capabilities: { engines: [{ name: NATIVE_ENGINE, codecs: ['h264', 'aac'] }], maxJobs: 1 } });
  try {
    for (;;) {
      const content = (await (await fetch(`${base}/api/contents/${contentId}`)).json()) as { status: string };
      if (content.status === 'ready') return;
      const { job } = await peer.next('job', () => true, 60_000);
      if (job.kind === 'audio') await completeAudioJob(base, peer, job);
      else await completeJob(base, peer, job);
      await afterJob?.(job);
    }
  } finally {
    peer.close();
  }
}

/** Joins as an encoder and keeps the `welcome` (its `resume` secret lets the same tab reconnect under its id). */
export async function joinEncoder(
  base: string,
  capabilities: Capabilities,
  resume?: { peerId: string; resume: string },
): Promise<{ peer: WsPeer; resume: string }> {
  const peer = await WsPeer.connect(base);
  const w = await peer.hello({ role: 'encoder', capabilities, ...(resume && { peerId: resume.peerId, resume: resume.resume }) });
  return { peer, resume: w.resume };
}

export type Upgrade = { ok: true; ws: WebSocket } | { ok: false; status: number; body: { error?: { code: string; message: string } } };

/** Opens /ws with extra request headers (e.g. X-Forwarded-For); a refused upgrade gives its status and JSON body. */
export function openSocket(base: string, headers: Record<string, string> = {}): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws`, { headers });
    ws.once('open', () => resolve({ ok: true, ws }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let body: { error?: { code: string; message: string } } = {};
        try {
          body = JSON.parse(text);
        } catch {
          /* not JSON: the assertion on the body will say so */
        }
        resolve({ ok: false, status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', (e) => reject(e));
  });
}

/**
 * Parses the Prometheus text format strictly: every sample belongs to a
 * metric declared by `# HELP` and `# TYPE` lines before it, and every value is
 * a number. Returns samples by `name` or `name{a="x",b="y"}` (labels as written).
 */
export function parseMetrics(text: string): Map<string, number> {
  const declared = new Map<string, { help: boolean; type?: string }>();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP (\w+) \S.*$/.exec(line);
    if (m) {
      declared.set(m[1]!, { help: true });
      continue;
    }
    m = /^# TYPE (\w+) (gauge|counter)$/.exec(line);
    if (m) {
      const d = declared.get(m[1]!);
      if (!d) throw new Error(`TYPE before HELP: ${line}`);
      d.type = m[2];
      continue;
    }
    m = /^(\w+)(\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    if (!declared.get(m[1]!)?.type) throw new Error(`sample of an undeclared metric: ${line}`);
    const v = Number(m[3]);
    if (!Number.isFinite(v)) throw new Error(`not a number: ${line}`);
    out.set(`${m[1]}${m[2] ?? ''}`, v);
  }
  return out;
}

export async function metricsOf(base: string): Promise<Map<string, number>> {
  const res = await fetch(`${base}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics: HTTP ${res.status}`);
  if (!/^text\/plain/.test(res.headers.get('content-type') ?? '')) throw new Error(`/metrics content type ${res.headers.get('content-type')}`);
  return parseMetrics(await res.text());
}

/**
 * Replaces an accepted variant with `bytes` the way CrossChecks.replaceVariant
 * does after two encoders agree against it: the old variant revoked (its cached
 * copy dropped), the new one accepted and handed to the cache. Returns its sha256.
 */
export function replaceVariant(s: Pick<RunningServer, 'pool' | 'store'>, key: ShardKey, bytes: Uint8Array, wrong = 'cheater'): string {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  s.pool.emit('shard-revoked', { key, peerId: wrong, reason: 'replaced after a cross-check' });
  s.store.accept(key.contentId, key.rendition, key.index, { sha256, size: bytes.byteLength });
  s.pool.emit('shard-accepted', { key, peerId: 'decider', sha256, bytes, replaced: true });
  return sha256;
}
