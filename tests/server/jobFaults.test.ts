/**
 * A job that fails the same way on two encoders is the job's fault, not the
 * encoders' (signaling/pool/VariantFaults.ts): its shards are given up with a
 * reason /pool shows, neither encoder is held to it, and the next content is
 * encoded. A real server and real WebSocket encoders; the failures are the
 * encoders' own job-failed reports, as a tab sends them when a source slice
 * gives fewer frames than the job asks for (issue 17, open GOP).
 */
import fs from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from '../harness/fixtures.ts';
import { waitFor } from '../harness/poolKit.ts';
import { nativeCaps } from '../harness/realShards.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

const LADDER = encodeURIComponent(JSON.stringify([{ id: 'v', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } }]));
let s: TestServer | undefined;
const peers: WsPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await s?.destroy();
  s = undefined;
});

it('a job two encoders fail the same way is given up with its reason; the encoders keep their record and encode the next content', async () => {
  // One failure in a row quarantines: without the rule, the second encoder's failure would quarantine it.
  s = await startTestServer({ heartbeatMs: 200, heartbeatTimeoutMs: 5000, verifySampleRate: 0, verifyNewEncoderJobs: 0, quarantineAfterFailures: 2 });
  const clip = fs.readFileSync(await fixture('v-23976'));
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await upload(s.url, clip, `?renditions=${LADDER}`);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    ids.push(r.json.id);
  }
  const reason = (n: number) => `the source slice gave ${n} frames for a job of 9`;
  const first = await WsPeer.encoder(s.url, { capabilities: nativeCaps() });
  peers.push(first);
  const { job } = await first.next('job');
  first.send({ type: 'job-failed', jobId: job.id, reason: reason(7) });
  await waitFor(() => s!.pool.recentEvents.some((e) => e.type === 'job-requeued') || undefined, 'the job re-queued');
  first.kill();
  expect(s.pool.health.get(first.peerId).failed).toBe(1);

  // Re-queued work goes first: the second encoder gets the same shards, and fails them the same way (other numbers).
  const second = await WsPeer.encoder(s.url, { capabilities: nativeCaps(4) });
  peers.push(second);
  const { job: again } = await second.next('job', (m) => m.job.contentId === job.contentId && m.job.shards[0]!.index === job.shards[0]!.index, 10_000);
  second.send({ type: 'job-failed', jobId: again.id, reason: reason(6) });

  const indices = job.shards.map((x) => x.index);
  const map = await waitFor(async () => {
    const m = (await (await fetch(`${s!.url}/api/contents/${job.contentId}`)).json()) as { shardMap: ShardMap };
    return indices.every((i) => m.shardMap.shards[i]!.renditions.v!.status === 'failed') ? m.shardMap : undefined;
  }, 'the shards given up');
  expect(map.shards.filter((x) => x.renditions.v!.status === 'failed').map((x) => x.index)).toEqual(indices);
  const failed = s.pool.recentEvents.filter((e) => e.type === 'shard-failed').map((e) => e.detail as { reason: string });
  expect(failed).toHaveLength(indices.length);
  expect(failed[0]!.reason).toMatch(/2 encoders failed it the same way.*gave 6 frames/);
  // Neither encoder is held to it.
  expect(s.pool.health.get(first.peerId).failed).toBe(0);
  expect(s.pool.health.get(second.peerId).failed).toBe(0);
  expect(s.pool.health.isQuarantined(second.peerId)).toBe(false);
  expect(s.pool.recentEvents.filter((e) => e.type === 'encoder-quarantined')).toEqual([]);
  // /api/pool says why.
  const pool = (await (await fetch(`${s.url}/api/pool`)).json()) as { events: { type: string; detail: { reason?: string } }[] };
  expect(pool.events.find((e) => e.type === 'shard-failed')?.detail.reason).toMatch(/the source is at fault/);
  // The encoder goes on: it is given the other content, and never the given-up shards again.
  const other = ids.find((x) => x !== job.contentId)!;
  const { job: next } = await second.next('job', (m) => m.job.contentId === other, 10_000);
  expect(next.contentId).toBe(other);
  expect([...s.pool.jobs.values()].filter((aj) => aj.job.contentId === job.contentId && aj.job.shards.some((x) => indices.includes(x.index)))).toEqual([]);
});
