/**
 * Shard transfer between two Node-side WebRTC peers (@roamhq/wrtc through
 * PeerLink), signalled through the real server: the same PeerManager and
 * ShardTransfer the tabs use.
 */
import { createHash, randomBytes } from 'node:crypto';
import wrtc from '@roamhq/wrtc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerManager } from '../../src/net/PeerManager.ts';
import { transportOf } from '../harness/nodePeer.ts';
import { FetchError, ServeLimiter, ShardTransfer } from '../../src/net/ShardTransfer.ts';
import { shardKeyString, type ShardKey } from '../../src/shared/shardMap.ts';
import { waitFor } from '../harness/poolKit.ts';
import { startTestServer, type TestServer } from '../harness/testServer.ts';
import { WsPeer } from '../harness/wsPeer.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s.destroy();
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('peer shard transfer', () => {
  it('fetches shards over a data channel, verifies them, and reports absent and corrupt ones', async () => {
    const holder = await WsPeer.encoder(s.url);
    const viewer = await WsPeer.viewer(s.url);
    const held = new Map<string, { bytes: Uint8Array; sha256: string }>();
    const good = new Uint8Array(randomBytes(300_000));
    const k0: ShardKey = { contentId: 'c', rendition: '360p', index: 0 };
    const k1: ShardKey = { ...k0, index: 1 };
    const k2: ShardKey = { ...k0, index: 2 };
    held.set(shardKeyString(k0), { bytes: good, sha256: sha(good) });
    // A corrupt holder: announces the accepted hash but sends other bytes.
    const bad = new Uint8Array(randomBytes(1000));
    held.set(shardKeyString(k2), { bytes: bad, sha256: 'f'.repeat(64) });
    const holderMgr = new PeerManager(transportOf(holder), { maxPeers: 4, wrtc });
    const transfers: ShardTransfer[] = [];
    holderMgr.on('link', ({ link }) => transfers.push(ShardTransfer.of(link, { get: (k) => held.get(shardKeyString(k)) })));
    const viewerMgr = new PeerManager(transportOf(viewer), { maxPeers: 4, wrtc });
    const link = await viewerMgr.connect(holder.peerId);
    // The signalling reached the right peer on both ends: one link, each side naming the other.
    expect(link.remoteId).toBe(holder.peerId);
    expect(transfers.map((t) => t.link.remoteId)).toEqual([viewer.peerId]);
    const xfer = ShardTransfer.of(link);

    const got = await xfer.fetch(k0, sha(good), 10_000);
    expect(got.sha256).toBe(sha(good));
    expect(Buffer.from(got.bytes).equals(Buffer.from(good))).toBe(true);

    await expect(xfer.fetch(k1, undefined, 10_000)).rejects.toMatchObject({ code: 'absent' });
    const corrupt = await xfer.fetch(k2, 'f'.repeat(64), 10_000).catch((e: FetchError) => e);
    expect(corrupt).toBeInstanceOf(FetchError);
    expect((corrupt as FetchError).code).toBe('hash-mismatch');

    // Several at once on one link.
    const many = await Promise.all(Array.from({ length: 8 }, () => xfer.fetch(k0, sha(good), 10_000)));
    expect(many.every((m) => m.sha256 === sha(good))).toBe(true);
    expect(transfers[0]!.bytesServed).toBe(9 * good.byteLength + bad.byteLength);
    viewerMgr.closeAll();
    holderMgr.closeAll();
    holder.close();
    viewer.close();
  });

  it('serves no more transfers at once than its limiter allows, over all its links', async () => {
    // A transfer holds its slot only while it waits on a full send buffer: one that never waits runs to
    // its end before the holder even reads the next request (at 5 MiB the requests came in one by one).
    // So the shards are well past the link's high mark (4 MiB, PeerManager), and the later requests are
    // sent only once a transfer is seen waiting, so three really are in the holder at once.
    const holder = await WsPeer.encoder(s.url);
    const big = new Uint8Array(randomBytes(12 * 2 ** 20));
    const k: ShardKey = { contentId: 'c', rendition: '360p', index: 0 };
    /** The real limiter, watched: the most transfers it had (serving or waiting) right after a request. */
    class WatchedLimiter extends ServeLimiter {
      peak = 0;
      override acquire() {
        const slot = super.acquire();
        this.peak = Math.max(this.peak, this.busy);
        return slot;
      }
    }
    const limiter = new WatchedLimiter(2);
    const holderMgr = new PeerManager(transportOf(holder), { maxPeers: 4, wrtc });
    // Each transfer's serving interval, from the moment it got its slot to its last byte sent.
    const spans: { from: number; to: number }[] = [];
    let requests = 0;
    holderMgr.on('link', ({ link }) => {
      const t = ShardTransfer.of(link, { get: () => (requests++, { bytes: big, sha256: sha(big) }) }, limiter);
      t.on('served', ({ ms }) => {
        const to = performance.now();
        spans.push({ from: to - ms, to });
      });
    });
    const viewers = [await WsPeer.viewer(s.url), await WsPeer.viewer(s.url)];
    const mgrs = viewers.map((v) => new PeerManager(transportOf(v), { maxPeers: 4, wrtc }));
    const [a, b] = (await Promise.all(mgrs.map((m) => m.connect(holder.peerId)))).map((l) => ShardTransfer.of(l));
    const fetches: Promise<{ bytes: Uint8Array; sha256: string }>[] = [];
    // Requests on the first link until one is caught waiting (received, not finished, between two tasks).
    for (let tries = 0; ; tries++) {
      expect(tries, 'a transfer of 12 MiB never waited on its send buffer').toBeLessThan(10);
      fetches.push(a!.fetch(k, sha(big), 30_000));
      await waitFor(() => requests === fetches.length || undefined, 'the request at the holder');
      if (spans.length < fetches.length) break;
    }
    // Two more while it waits: one on the same link, one on the other.
    fetches.push(a!.fetch(k, sha(big), 30_000), b!.fetch(k, sha(big), 30_000));
    const got = await Promise.all(fetches);
    expect(got.every((g) => g.sha256 === sha(big) && g.bytes.byteLength === big.byteLength)).toBe(true);
    expect(spans).toHaveLength(fetches.length);
    // A request had to wait for a slot (it was counted busy meanwhile, the holder's heartbeat figure)...
    expect(limiter.peak).toBeGreaterThan(2);
    // ...and the most transfers in flight at any instant was exactly the limit (the slots were used).
    const edges = spans
      .flatMap((x) => [
        { t: x.from, d: 1 },
        { t: x.to, d: -1 },
      ])
      .sort((p, q) => p.t - q.t || p.d - q.d);
    let now = 0;
    let most = 0;
    for (const e of edges) most = Math.max(most, (now += e.d));
    expect(most).toBe(2);
    expect(limiter.busy).toBe(0);
    for (const m of [...mgrs, holderMgr]) m.closeAll();
    for (const p of [...viewers, holder]) p.close();
  });
});
