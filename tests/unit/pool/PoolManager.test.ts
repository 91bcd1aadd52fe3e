/** The facade on its own: no sockets, no timers (the ticker is not started), a fake clock. */
import { afterEach, describe, expect, it } from 'vitest';
import type { Job, ServerMessage } from '../../../src/shared/protocol.ts';
import { loadConfig } from '../../../signaling/config.ts';
import { PoolManager } from '../../../signaling/PoolManager.ts';
import { fakeClock, H264, publishedStore, removeStores } from './fixtures.ts';

afterEach(removeStores);

async function setup() {
  const { dir, store } = await publishedStore(1);
  const clock = fakeClock();
  const config = loadConfig([], {}, { dataDir: dir, maxJobsPerEncoder: 1, testHooks: { verifyShardBytes: false } });
  const pool = new PoolManager(
    store,
    config,
    clock.now,
    () => false,
    () => 0.99,
  );
  const tab = (role: 'encoder' | 'viewer') => {
    const inbox: ServerMessage[] = [];
    const id = pool.join(
      { send: (m) => void inbox.push(m), close: () => {} },
      { type: 'hello', protocol: 1, role, ...(role === 'encoder' && { capabilities: { engines: H264, maxJobs: 1 } }) },
    );
    return { id, inbox, jobs: () => inbox.filter((m): m is Extract<ServerMessage, { type: 'job' }> => m.type === 'job').map((m) => m.job) };
  };
  return { store, pool, clock, tab, content: store.get('c')! };
}

const ready = (pool: PoolManager, id: string, job: Job) => {
  for (const s of job.shards)
    pool.handle(id, {
      type: 'shard-ready',
      jobId: job.id,
      key: { contentId: job.contentId, rendition: job.rendition, index: s.index },
      sha256: `${s.index}`.padStart(64, '0'),
      size: 10,
      engine: 'ffmpeg-wasm@1',
    });
};

describe('PoolManager (facade)', () => {
  it('gives a joining encoder a job, accepts its shards, and counts it all from the events', async () => {
    const { pool, tab, content } = await setup();
    const e = tab('encoder');
    const [job] = e.jobs();
    expect(job).toBeDefined();
    expect(content.map.shards[job!.shards[0]!.index]!.renditions[job!.rendition]!.status).toBe('encoding');
    ready(pool, e.id, job!);
    pool.handle(e.id, { type: 'job-done', jobId: job!.id });
    expect(content.map.shards[job!.shards[0]!.index]!.renditions[job!.rendition]!.status).toBe('ready');
    expect(pool.peers.get(e.id)!.holdings.size).toBe(job!.shards.length);
    expect(pool.counters).toMatchObject({ jobsAssigned: 2, jobsCompleted: 1, shardsAccepted: job!.shards.length });
    expect(e.jobs()).toHaveLength(2); // the next one followed
  });

  it('answers a refused message with an error and counts it', async () => {
    const { pool, tab } = await setup();
    const v = tab('viewer');
    pool.handle(v.id, { type: 'job-progress', jobId: 'nope', progress: 0.5 });
    expect(v.inbox.at(-1)).toMatchObject({ type: 'error', code: 'unknown-job', ref: 'job-progress' });
    expect(pool.counters.badMessages).toBe(1);
  });

  it("re-queues a lost encoder's work without counting an attempt, and re-encodes what only it held", async () => {
    const { pool, tab, content } = await setup();
    const a = tab('encoder');
    const [job] = a.jobs();
    ready(pool, a.id, job!);
    pool.handle(a.id, { type: 'job-done', jobId: job!.id });
    const key = { rendition: job!.rendition, index: job!.shards[0]!.index };
    pool.leave(a.id, 'socket closed');
    // Accepted but held by nobody: to be encoded again (no cache here).
    expect(content.map.shards[key.index]!.renditions[key.rendition]!.status).toBe('pending');
    expect(pool.recentEvents.map((e) => e.type)).toContain('shard-orphaned');
    const b = tab('encoder');
    expect(b.jobs()[0]).toMatchObject({ rendition: job!.rendition });
    expect(pool.snapshot().jobs).toHaveLength(1);
  });

  it('views: the heat map and the /metrics figures read the owners, with computed statuses', async () => {
    const { pool, tab, content } = await setup();
    const e = tab('encoder');
    tab('viewer');
    const [job] = e.jobs();
    const variants = content.map.shards.length * content.map.renditions.length;
    const v = pool.views.variants();
    expect(Object.fromEntries(v.byStatus)).toEqual({ encoding: job!.shards.length, pending: variants - job!.shards.length });
    expect(pool.views.peerCounts()).toEqual({ encoder: 1, viewer: 1, quarantined: 0 });
    expect(pool.views.jobsByClass().get('start')).toBe(1);
    const row = pool.views.heat()[0]!.renditions.find((r) => r.id === job!.rendition)!;
    expect(row.status.startsWith('e'.repeat(job!.shards.length))).toBe(true);
  });
});
