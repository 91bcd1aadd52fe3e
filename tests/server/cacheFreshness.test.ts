/**
 * Cached shards over HTTP when a variant is replaced (a cross-check found the
 * accepted bytes wrong and two encoders agree on others): a client holding
 * the old copy must never keep using it. The content-addressed URL
 * (`?sha256=`) is immutable and stops answering once its variant is gone; the
 * plain URL is revalidated by ETag, and a revalidation with the old ETag gets
 * the new bytes. Real server, real HTTP, real shards made by native ffmpeg.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { apiUrl } from '../../src/shared/api.ts';
import { fixture } from '../harness/fixtures.ts';
import { encodeJob } from '../harness/nativeEncoder.ts';
import { waitFor } from '../harness/poolKit.ts';
import { completeJob, joinEncoder, nativeCaps } from '../harness/realShards.ts';
import { startTestServer, upload, type TestServer } from '../harness/testServer.ts';
import type { WsPeer } from '../harness/wsPeer.ts';

let clip: Uint8Array;
let server: TestServer | undefined;
const peers: WsPeer[] = [];
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  clip = new Uint8Array(fs.readFileSync(await fixture('av-3s')));
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await server?.destroy();
  server = undefined;
});

describe('cached shard URLs', () => {
  it('a replaced variant is never served under its old address, and revalidating the plain URL gets the new bytes', async () => {
    const s = (server = await startTestServer({ verifyNewEncoderJobs: 0, verifySampleRate: 0 }));
    const id = (await upload(s.url, clip)).json.id as string;
    const { peer } = await joinEncoder(s.url, nativeCaps(1));
    peers.push(peer);
    const { job } = await peer.next('job', () => true, 30_000);
    const hashes = await completeJob(s.url, peer, job);
    const key = { contentId: id, rendition: job.rendition, index: job.shards[0]!.index };
    const oldSha = hashes.get(key.index)!;
    const plain = new URL(apiUrl.shard(key), s.url);
    const byHash = (h: string) => new URL(apiUrl.cachedShard(key, h), s.url);
    await waitFor(async () => (await fetch(plain)).status === 200 || undefined, 'the shard in the cache');

    // Before: the hash-addressed URL may be kept for good; the plain one only with revalidation.
    const first = await fetch(byHash(oldSha));
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toContain('immutable');
    const plainRes = await fetch(plain);
    expect(plainRes.headers.get('etag')).toBe(`"${oldSha}"`);
    expect(plainRes.headers.get('cache-control')).toContain('no-cache');
    expect(plainRes.headers.get('cache-control')).not.toContain('immutable');
    expect((await fetch(plain, { headers: { 'If-None-Match': `"${oldSha}"` } })).status).toBe(304);

    // The replacement, as CrossChecks.replaceVariant does it: the old variant revoked, the agreeing one accepted with its bytes.
    const [newBytes] = await encodeJob(s.url, { ...job, shards: job.shards.slice(0, 1) }, 'other');
    const newSha = sha(newBytes!);
    expect(newSha).not.toBe(oldSha);
    s.pool.emit('shard-revoked', { key, peerId: peer.peerId, reason: 'replaced after a cross-check' });
    s.store.accept(id, key.rendition, key.index, { sha256: newSha, size: newBytes!.byteLength });
    s.pool.emit('shard-accepted', { key, peerId: 'decider', sha256: newSha, bytes: newBytes!, replaced: true });
    await waitFor(async () => (await fetch(byHash(newSha))).status === 200 || undefined, 'the new variant in the cache');

    // After: the old address answers a clear error, never the old bytes.
    const gone = await fetch(byHash(oldSha));
    expect(gone.status).toBe(404);
    const err = (await gone.json()) as { error: { code: string; message: string } };
    expect(err.error.code).toBe('variant-replaced');
    expect(err.error.message).toContain(newSha);
    // A client revalidating its old copy of the plain URL gets the new bytes.
    const revalidated = await fetch(plain, { headers: { 'If-None-Match': `"${oldSha}"` } });
    expect(revalidated.status).toBe(200);
    expect(revalidated.headers.get('etag')).toBe(`"${newSha}"`);
    expect(sha(new Uint8Array(await revalidated.arrayBuffer()))).toBe(newSha);
    const current = await fetch(byHash(newSha));
    expect(current.headers.get('cache-control')).toContain('immutable');
    expect(sha(new Uint8Array(await current.arrayBuffer()))).toBe(newSha);
  }, 60_000);
});
