import { describe, expect, it } from 'vitest';
import type { Job } from '../../../src/shared/protocol.ts';
import { Health } from '../../../signaling/policy/Health.ts';
import { Trust } from '../../../signaling/policy/Trust.ts';
import { AvailabilityIndex } from '../../../signaling/pool/AvailabilityIndex.ts';
import { CrossChecks } from '../../../signaling/pool/CrossChecks.ts';
import { JobLedger } from '../../../signaling/pool/JobLedger.ts';
import { Sessions } from '../../../signaling/pool/Sessions.ts';
import type { ActiveJob } from '../../../signaling/pool/types.ts';
import { accepted, contentOf, fakeClock, fakeOutbox, fakeStore, H264, key } from './fixtures.ts';

const ENGINE = 'ffmpeg-wasm@1';
const GOOD = 'g'.repeat(64);
const BAD = 'b'.repeat(64);

function setup() {
  const clock = fakeClock();
  const c = contentOf('c', 10);
  const { store, writes } = fakeStore(c);
  const index = new AvailabilityIndex(100);
  const ledger = new JobLedger();
  const sessions = new Sessions({ jobsOf: (id) => ledger.jobsOf(id), holdingsOf: (id) => index.heldBy(id) });
  const trust = new Trust({ verifySampleRate: 0.1, verifyNewEncoderJobs: 3, verifyTrustGrowth: 0.5 }, () => 0.99);
  const health = new Health({ quarantineAfterFailures: 3, quarantineAfterInvalid: 2, quarantineMs: 60_000 }, clock.now);
  const box = fakeOutbox();
  const quarantined: string[] = [];
  const checks = new CrossChecks(
    store,
    index,
    ledger,
    trust,
    health,
    box.outbox,
    {
      addHolder: (p, k) => void index.add(p, k),
      forgetReplica: () => {},
      quarantined: (p) => void quarantined.push(p),
      scheduleSoon: () => {},
    },
    { verifyEngines: 'ffmpeg-wasm', verifyQueueMax: 10 },
  );
  const encoder = () => sessions.open({ send: () => {}, close: () => {} }, 'encoder', 0, { engines: H264, maxJobs: 1 }).peer;
  return { c, writes, index, ledger, trust, box, checks, quarantined, encoder };
}

/** Origin encoded shards 0 and 1 of 180p with `sha`, holds them, and finished its job. */
function encoded(s: ReturnType<typeof setup>, origin: string, sha: string): ActiveJob {
  for (const i of [0, 1]) {
    accepted(s.c, '180p', i, sha, ENGINE);
    s.index.add(origin, `c/180p/${i}`);
    s.trust.accepted(origin, `c/180p/${i}`);
  }
  const job = { id: 'j', contentId: 'c', rendition: '180p', shards: [{ index: 0 }, { index: 1 }] } as Job;
  return { job, peerId: origin, assignedAt: 0, done: new Set([0, 1]), progress: 1, klass: 'background' };
}

/** Gives the waiting check to `peer`, which reports `sha` for each shard and finishes. */
function runCheck(s: ReturnType<typeof setup>, peer: ReturnType<ReturnType<typeof setup>['encoder']>, sha: string): void {
  const [pick] = s.checks.take([{ peer, free: 1 }]);
  expect(pick?.peer).toBe(peer);
  const aj: ActiveJob = {
    job: { id: `chk-${peer.id}` } as Job,
    peerId: peer.id,
    assignedAt: 0,
    done: new Set(),
    progress: 0,
    klass: 'background',
    check: pick!.check,
    results: new Map(),
  };
  for (const i of pick!.indices) s.checks.reported(peer, aj, key('c', '180p', i), { sha256: sha, size: 1000, engine: ENGINE });
  s.checks.done(peer, aj);
}

describe('CrossChecks', () => {
  it('checks a new encoder: a verifier of the same engine that agrees passes it and holds a verified copy', () => {
    const s = setup();
    const origin = s.encoder();
    const verifier = s.encoder();
    s.checks.afterJob(origin, encoded(s, origin.id, GOOD));
    expect(s.checks.queue).toHaveLength(1);
    // The origin itself may not verify its own shards.
    expect(s.checks.take([{ peer: origin, free: 1 }])).toEqual([]);
    runCheck(s, verifier, GOOD);
    expect(s.box.of('check-passed')).toHaveLength(1);
    expect(s.index.holds(verifier.id, 'c/180p/0')).toBe(true);
    expect(s.trust.get(origin.id).passed).toBe(1);
  });

  it('does not compare engines not known to be deterministic', () => {
    const s = setup();
    const origin = s.encoder();
    const aj = encoded(s, origin.id, GOOD);
    for (const i of [0, 1]) s.c.map.shards[i]!.renditions['180p']!.engine = 'webcodecs@1';
    s.checks.afterJob(origin, aj);
    expect(s.checks.queue).toHaveLength(0);
    expect(s.trust.counters.unverifiable).toBe(2);
  });

  it('a mismatch goes to a third encoder; agreeing with the verifier replaces the variant and convicts the origin', () => {
    const s = setup();
    const origin = s.encoder();
    s.checks.afterJob(origin, encoded(s, origin.id, BAD));
    runCheck(s, s.encoder(), GOOD);
    expect(s.checks.queue[0]).toMatchObject({ stage: 'decide' });
    const decider = s.encoder();
    runCheck(s, decider, GOOD);
    expect(s.writes.filter((w) => w.startsWith('accept'))).toEqual(['accept c/180p/0', 'accept c/180p/1']);
    expect(s.c.map.shards[0]!.renditions['180p']!.sha256).toBe(GOOD);
    // The origin's wrong copies are released; the decider holds the new variant.
    expect(s.index.holds(origin.id, 'c/180p/0')).toBe(false);
    expect(s.index.holds(decider.id, 'c/180p/0')).toBe(true);
    expect(s.box.sent.filter((m) => m.to === origin.id && m.msg.type === 'release')).toHaveLength(2);
    expect(s.box.of('encoder-convicted')).toEqual([{ peerId: origin.id, wrong: 2, revoked: 0 }]);
    expect(s.box.of('shard-accepted')).toEqual([expect.objectContaining({ replaced: true }), expect.objectContaining({ replaced: true })]);
  });

  it('a requeued check comes back first, never to the encoder that dropped it', () => {
    const s = setup();
    const origin = s.encoder();
    const quitter = s.encoder();
    s.checks.afterJob(origin, encoded(s, origin.id, GOOD));
    const [pick] = s.checks.take([{ peer: quitter, free: 1 }]);
    s.checks.requeue(pick!.check, quitter.id);
    expect(s.checks.take([{ peer: quitter, free: 1 }])).toEqual([]);
    s.checks.forgetContent('c');
    expect(s.checks.queue).toHaveLength(0);
  });
});
