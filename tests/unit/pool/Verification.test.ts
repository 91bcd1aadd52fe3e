import { describe, expect, it } from 'vitest';
import type { VerifyMeasure } from '../../../src/shared/protocol.ts';
import { Health } from '../../../signaling/policy/Health.ts';
import { Trust } from '../../../signaling/policy/Trust.ts';
import { advance, judge, Verification, type VerifyTask } from '../../../signaling/pool/Verification.ts';
import { ProtocolError, type Peer } from '../../../signaling/pool/types.ts';
import { accepted, contentOf, fakeClock, fakeOutbox, fakeStore, H264 } from './fixtures.ts';

const WC = 'webcodecs@Chromium/1';
const CONFIG = {
  verifyPictureEngines: 'webcodecs',
  verifyMinPsnrDb: 25,
  verifyMaxTimeErrorSeconds: 0.002,
  verifyTimeoutMs: 10_000,
  verifyMaxAttempts: 2,
  verifyQueueMax: 10,
};

const peer = (id: string, engines = H264) => ({ id, role: 'encoder', capabilities: { engines, maxJobs: 1 } }) as unknown as Peer;

function setup(random = () => 0) {
  const clock = fakeClock();
  const c = contentOf('c', 10);
  const { store, writes } = fakeStore(c);
  const trust = new Trust({ verifySampleRate: 0.1, verifyNewEncoderJobs: 3, verifyTrustGrowth: 0.5 }, random);
  const health = new Health({ quarantineAfterFailures: 3, quarantineAfterInvalid: 2, quarantineMs: 60_000 }, clock.now);
  const box = fakeOutbox();
  const convicted: [string, number][] = [];
  const invalid: string[] = [];
  const late: string[] = [];
  const holdings = new Set<string>();
  const v = new Verification(
    store,
    trust,
    health,
    box.outbox,
    {
      convict: (p, n) => void convicted.push([p, n]),
      invalid: (p) => void invalid.push(p),
      timedOut: (p) => void late.push(p),
      jobFor: (contentId, rendition, indices) =>
        ({ id: 'j', contentId, rendition, shards: indices.map((index) => ({ index, frames: c.map.shards[index]!.frames })) }) as never,
      sources: () => ({ from: [], cached: true }),
      holds: (p, k) => holdings.has(`${p} ${k}`),
      scheduleSoon: () => {},
    },
    CONFIG,
    clock.now,
  );
  for (const i of [0, 1]) {
    accepted(c, '180p', i, String(i).repeat(64), WC);
    trust.accepted('origin', `c/180p/${i}`);
  }
  return { c, clock, writes, trust, health, box, v, convicted, invalid, late, holdings };
}

type S = ReturnType<typeof setup>;

/** Gives the waiting task to `id` (asserting it is sent there); returns the verify id. */
function assign(s: S, id: string): string {
  const before = s.box.sent.length;
  s.v.take([{ peer: peer(id), free: 1 }]);
  const m = s.box.sent.slice(before).find((x) => x.to === id)?.msg;
  expect(m?.type).toBe('verify');
  return (m as { verifyId: string }).verifyId;
}

/** A verifier's measures of shards `indices`: good pictures unless the index is in `bad`. */
function measures(s: S, indices: number[], bad: number[] = []): VerifyMeasure[] {
  return indices.map((index) => ({ index, frames: s.c.map.shards[index]!.frames, psnr: bad.includes(index) ? 8 : 40, maxTimeError: 0 }));
}

describe('judge', () => {
  const shard = { frames: 15 };
  it('passes matching frames, times and pictures, and names the first fault otherwise', () => {
    expect(judge({ index: 0, frames: 15, psnr: 40, maxTimeError: 0.001 }, shard, CONFIG)).toBeUndefined();
    expect(judge({ index: 0, frames: 14, psnr: 40, maxTimeError: 0 }, shard, CONFIG)).toMatch(/14 frames decoded, 15 expected/);
    expect(judge({ index: 0, frames: 15, psnr: 40, maxTimeError: 0.02 }, shard, CONFIG)).toMatch(/frame times off by up to 20.0 ms/);
    expect(judge({ index: 0, frames: 15, psnr: 24.9, maxTimeError: 0 }, shard, CONFIG)).toMatch(/PSNR 24.9 dB/);
  });
});

describe('advance (the state machine)', () => {
  const task = (): VerifyTask => ({
    id: 't',
    contentId: 'c',
    rendition: '180p',
    indices: [0, 1, 2],
    expected: new Map(),
    engine: WC,
    origin: 'o',
    stage: 'first',
    state: 'assigned',
    exclude: new Set(['o']),
    attempts: 1,
  });

  it('first stage: a pass ends it; fails go to a second verifier, the passes count', () => {
    expect(advance(task(), 'a', [])).toEqual({ kind: 'passed', verified: [0, 1, 2] });
    const t = task();
    expect(advance(t, 'a', [1])).toEqual({ kind: 'next-stage', stage: 'confirm', verified: [0, 2] });
    expect(t).toMatchObject({ stage: 'confirm', state: 'queued', indices: [1], accuser: 'a', attempts: 0 });
    expect(t.exclude.has('a')).toBe(true);
  });

  it('a confirmed fail convicts; a disputed one goes to a third, whose pass clears and names the false alarm', () => {
    const t = task();
    advance(t, 'a', [1, 2]);
    expect(advance(t, 'b', [2])).toEqual({ kind: 'convicted', wrong: [2] });
    expect(t.state).toBe('convicted');
    const u = task();
    advance(u, 'a', [1]);
    expect(advance(u, 'b', [])).toEqual({ kind: 'next-stage', stage: 'decide', verified: [] });
    expect(u).toMatchObject({ stage: 'decide', defender: 'b' });
    const w = { ...u, exclude: new Set(u.exclude) };
    expect(advance(w, 'c', [1])).toEqual({ kind: 'convicted', wrong: [1] });
    expect(advance(u, 'c', [])).toEqual({ kind: 'cleared', falseAlarm: 'a' });
    expect(u.state).toBe('cleared');
  });
});

describe('Verification', () => {
  it('plans only for covered engines, per Trust sampling; other engines stay with hash cross-checks', () => {
    const s = setup();
    expect(s.v.afterJob('origin', 'c', '180p', [0, 1])).toBe(true);
    expect(s.v.queue).toHaveLength(1);
    accepted(s.c, '180p', 2, '2'.repeat(64), 'ffmpeg-wasm@1');
    expect(s.v.afterJob('origin', 'c', '180p', [2])).toBe(false);
    const never = setup(() => 0.99);
    for (let i = 0; i < 3; i++) never.trust.passed('origin');
    never.trust.passed('origin');
    expect(never.v.afterJob('origin', 'c', '180p', [0, 1])).toBe(true);
    expect(never.v.queue).toHaveLength(0);
  });

  it('is never given to the encoder, a holder, a tab without ffmpeg.wasm or a busy tab; it takes a slot', () => {
    const s = setup();
    s.v.afterJob('origin', 'c', '180p', [0, 1]);
    s.holdings.add('h c/180p/0');
    const slots = [
      { peer: peer('origin'), free: 1 },
      { peer: peer('h'), free: 1 },
      { peer: peer('wc', [{ name: 'webcodecs', build: 'x', codecs: ['h264'], speed: 1 }]), free: 1 },
      { peer: peer('busy'), free: 0 },
    ];
    s.v.take(slots);
    expect(s.box.sent).toEqual([]);
    const id = assign(s, 'a');
    expect(s.v.busy('a')).toBe(1);
    const msg = s.box.sent.at(-1)!.msg as { shards: { index: number; sha256: string }[]; deadline: number };
    expect(msg.shards.map((x) => [x.index, x.sha256])).toEqual([
      [0, '0'.repeat(64)],
      [1, '1'.repeat(64)],
    ]);
    expect(msg.deadline).toBe(s.clock.t + CONFIG.verifyTimeoutMs);
    expect(() => s.v.result('b', id, measures(s, [0, 1]))).toThrow(ProtocolError);
    expect(() => s.v.result('a', id, measures(s, [0]))).toThrow(/exactly shards 0,1/);
  });

  it('a pass verifies the shards with Trust; one verifier alone convicts nobody', () => {
    const s = setup();
    s.v.afterJob('origin', 'c', '180p', [0, 1]);
    s.v.result('a', assign(s, 'a'), measures(s, [0, 1]));
    expect(s.trust.unverifiedCount('origin')).toBe(0);
    expect(s.trust.get('origin').passed).toBe(1);
    const t = setup();
    t.v.afterJob('origin', 'c', '180p', [0, 1]);
    t.v.result('a', assign(t, 'a'), measures(t, [0, 1], [1]));
    expect(t.convicted).toEqual([]);
    expect(t.trust.unverifiedCount('origin')).toBe(1);
    expect(t.v.queue[0]).toMatchObject({ stage: 'confirm', indices: [1] });
  });

  it('two verifiers failing a shard convict its encoder', () => {
    const s = setup();
    s.v.afterJob('origin', 'c', '180p', [0, 1]);
    s.v.result('a', assign(s, 'a'), measures(s, [0, 1], [1]));
    // The first verifier may not confirm its own fail.
    s.v.take([{ peer: peer('a'), free: 1 }]);
    expect(s.v.busy('a')).toBe(0);
    s.v.result('b', assign(s, 'b'), measures(s, [1], [1]));
    expect(s.convicted).toEqual([['origin', 1]]);
    expect(s.box.of('verify-convicted')).toMatchObject([{ origin: 'origin', verifiers: ['a', 'b'] }]);
  });

  it('a false alarm overturned by two verifiers counts against the accuser, not the encoder', () => {
    const s = setup();
    s.v.afterJob('origin', 'c', '180p', [0, 1]);
    s.v.result('a', assign(s, 'a'), measures(s, [0, 1], [0]));
    s.v.result('b', assign(s, 'b'), measures(s, [0]));
    s.v.result('c', assign(s, 'c'), measures(s, [0]));
    expect(s.convicted).toEqual([]);
    expect(s.invalid).toEqual(['a']);
    expect(s.trust.unverifiedCount('origin')).toBe(0);
  });

  it('a late, gone or failing verifier gives the task back to another; after the attempts its shards are unverifiable', () => {
    const s = setup();
    s.v.afterJob('origin', 'c', '180p', [0, 1]);
    assign(s, 'a');
    s.clock.t += CONFIG.verifyTimeoutMs + 1;
    s.v.expire(s.clock.t);
    expect(s.v.busy('a')).toBe(0);
    expect(s.late).toEqual(['a']);
    s.v.take([{ peer: peer('a'), free: 1 }]);
    expect(s.v.busy('a')).toBe(0);
    const id = assign(s, 'b');
    s.v.failed('b', id, 'no copy');
    expect(s.v.queue).toHaveLength(0);
    expect(s.v.counters.unverifiable).toBe(2);
    expect(s.convicted).toEqual([]);
    const t = setup();
    t.v.afterJob('origin', 'c', '180p', [0, 1]);
    assign(t, 'a');
    t.v.peerLeft('a');
    expect(t.v.queue).toHaveLength(1);
  });

  it('shards replaced or revoked meanwhile are not judged; a deleted content drops its tasks', () => {
    const s = setup();
    s.v.afterJob('origin', 'c', '180p', [0, 1]);
    s.c.map.shards[0]!.renditions['180p']!.sha256 = 'f'.repeat(64);
    const id = assign(s, 'a');
    s.v.result('a', id, measures(s, [1]));
    expect(s.v.counters.shardsPassed).toBe(1);
    s.v.afterJob('origin', 'c', '180p', [1]);
    s.v.forgetContent('c');
    expect(s.v.queue).toHaveLength(0);
  });
});
