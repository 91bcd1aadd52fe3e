/**
 * Shard transfer between two Node-side WebRTC peers (@roamhq/wrtc through
 * simple-peer), signalled through the real server: the same PeerManager and
 * ShardTransfer the tabs use.
 */
import { createHash, randomBytes } from 'node:crypto';
import wrtc from '@roamhq/wrtc';
import SimplePeer from 'simple-peer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerManager } from '../../src/shared/PeerManager.ts';
import { transportOf } from '../harness/nodePeer.ts';
import { FetchError, ServeLimiter, ShardTransfer } from '../../src/shared/ShardTransfer.ts';
import { shardKeyString, type ShardKey } from '../../src/shared/shardMap.ts';
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
    const limiter = new ServeLimiter(2);
    const holderMgr = new PeerManager(transportOf(holder), SimplePeer, { maxPeers: 4, wrtc });
    const transfers: ShardTransfer[] = [];
    holderMgr.on('link', ({ link }) => transfers.push(ShardTransfer.of(link, { get: (k) => held.get(shardKeyString(k)) }, limiter)));
    const viewerMgr = new PeerManager(transportOf(viewer), SimplePeer, { maxPeers: 4, wrtc });
    const t0 = performance.now();
    const link = await viewerMgr.connect(holder.peerId);
    const connectMs = performance.now() - t0;
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
    expect(connectMs).toBeLessThan(10_000);
    viewerMgr.closeAll();
    holderMgr.closeAll();
    holder.close();
    viewer.close();
  });
});
