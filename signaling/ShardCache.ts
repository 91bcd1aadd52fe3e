/**
 * The server's shard cache: the viewers' last resort, and the copy that
 * outlives every encoder. Encoders upload finished shards; a shard is kept
 * only if its bytes hash to the accepted variant and its structure checks out.
 *
 * Layout: dataDir/cache/<contentId>/<rendition>/<index>.mp4 (atomic writes).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { isAudioRendition, shardKeyString, type ShardKey } from '../src/shared/shardMap.ts';
import type { ContentStore } from './ContentStore.ts';
import { writeFileAtomic } from './fsutil.ts';
import { ShardcastError } from '../src/shared/errors.ts';
import { checkShard, ShardCheckError, videoShardExpectation } from './media/validate.ts';

export class ShardCache {
  private readonly present = new Set<string>();
  readonly dir: string;

  constructor(
    dataDir: string,
    private readonly store: ContentStore,
  ) {
    this.dir = path.join(dataDir, 'cache');
  }

  /**
   * Indexes what is on disk, checked against the accepted-shard registry (the
   * store's maps): a file is kept only if its variant is accepted and its bytes
   * hash to the accepted sha256 with the accepted size. Files of deleted
   * contents, of variants not accepted, torn or corrupt ones (a disk error, a
   * kill mid-rename on a filesystem without atomic rename, a variant replaced
   * while the server was down) and temp files of interrupted writes are removed.
   * Every file is read once, so a start takes time in proportion to the cache.
   * Returns the keys of the dropped files of accepted variants (the pool then
   * re-queues those no encoder holds, after its restart grace period).
   */
  async open(): Promise<{ kept: number; dropped: string[] }> {
    await fsp.mkdir(this.dir, { recursive: true });
    const dropped: string[] = [];
    for (const contentId of await fsp.readdir(this.dir)) {
      const content = this.store.get(contentId);
      if (!content) {
        await fsp.rm(path.join(this.dir, contentId), { recursive: true, force: true });
        continue;
      }
      for (const rendition of await fsp.readdir(path.join(this.dir, contentId)).catch(() => [])) {
        for (const name of await fsp.readdir(path.join(this.dir, contentId, rendition)).catch(() => [])) {
          const m = /^(\d+)\.mp4$/.exec(name);
          const file = path.join(this.dir, contentId, rendition, name);
          if (!m) {
            await fsp.rm(file, { force: true }); // temp files of interrupted writes
            continue;
          }
          const k = { contentId, rendition, index: Number(m[1]) };
          const st = content.map.shards[k.index]?.renditions[rendition];
          if (st?.status !== 'ready' || !st.sha256) {
            await fsp.rm(file, { force: true });
            continue;
          }
          const bytes = await fsp.readFile(file).catch(() => undefined);
          if (bytes && (st.size === undefined || bytes.byteLength === st.size) && createHash('sha256').update(bytes).digest('hex') === st.sha256) {
            this.present.add(shardKeyString(k));
          } else {
            dropped.push(shardKeyString(k));
            await fsp.rm(file, { force: true });
          }
        }
      }
    }
    return { kept: this.present.size, dropped };
  }

  private file(k: ShardKey): string {
    return path.join(this.dir, k.contentId, k.rendition, `${k.index}.mp4`);
  }

  has(k: ShardKey): boolean {
    return this.present.has(shardKeyString(k));
  }

  get size(): number {
    return this.present.size;
  }

  async read(k: ShardKey): Promise<Uint8Array | undefined> {
    if (!this.has(k)) return undefined;
    try {
      return new Uint8Array(await fsp.readFile(this.file(k)));
    } catch {
      this.present.delete(shardKeyString(k));
      return undefined;
    }
  }

  /**
   * Stores the bytes of a variant the pool has just accepted, which the
   * intake already checked (structure, hash): only the hash is compared again,
   * in case the accepted variant changed meanwhile.
   */
  async putAccepted(k: ShardKey, bytes: Uint8Array): Promise<void> {
    const st = this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition];
    if (st?.status !== 'ready' || !st.sha256 || this.has(k)) return;
    if (createHash('sha256').update(bytes).digest('hex') !== st.sha256) return;
    await fsp.mkdir(path.dirname(this.file(k)), { recursive: true });
    await writeFileAtomic(this.file(k), bytes);
    this.present.add(shardKeyString(k));
  }

  /** A variant was revoked or replaced: its cached copy goes at once (synchronously, so a new copy cannot race the removal). */
  forget(k: ShardKey): void {
    this.present.delete(shardKeyString(k));
    fs.rmSync(this.file(k), { force: true });
  }

  /**
   * The accepted variant an upload of `k` would be a copy of, from the request head alone.
   * @throws ShardcastError unknown-shard, or not-accepted (no accepted variant yet).
   */
  accepted(k: ShardKey) {
    const content = this.store.get(k.contentId);
    const shard = content?.map.shards[k.index];
    const st = shard?.renditions[k.rendition];
    const rendition = content?.map.renditions.find((r) => r.id === k.rendition);
    if (!content || !shard || !st || !rendition) throw new ShardcastError('unknown-shard', `no shard ${shardKeyString(k)}`);
    if (st.status !== 'ready' || !st.sha256) {
      throw new ShardcastError('not-accepted', `shard ${shardKeyString(k)} has no accepted variant yet: report shard-ready first`);
    }
    return { content, shard, st: { ...st, sha256: st.sha256 }, rendition };
  }

  /**
   * Checks and stores an uploaded shard. Throws a ShardcastError when it is refused:
   * unknown-shard, not-accepted (no accepted variant yet), hash-mismatch, or a ShardCheckError code.
   */
  async put(k: ShardKey, bytes: Uint8Array): Promise<void> {
    const { content, shard, st, rendition } = this.accepted(k);
    const hash = createHash('sha256').update(bytes).digest('hex');
    if (hash !== st.sha256) throw new ShardcastError('hash-mismatch', `these bytes hash to ${hash}, the accepted variant is ${st.sha256}`);
    if (this.has(k)) return;
    try {
      await checkShard(
        bytes,
        isAudioRendition(rendition)
          ? { kind: 'audio', spec: rendition.audio, samples: st.samples ?? 0, lead: st.lead ?? 0, tail: st.tail ?? 0 }
          : videoShardExpectation(content.map, shard, k.rendition),
      );
    } catch (e) {
      if (e instanceof ShardCheckError) throw new ShardCheckError(e.code, `shard ${shardKeyString(k)} refused: ${e.message}`);
      throw e;
    }
    await fsp.mkdir(path.dirname(this.file(k)), { recursive: true });
    await writeFileAtomic(this.file(k), bytes);
    this.present.add(shardKeyString(k));
  }

  async forgetContent(contentId: string): Promise<void> {
    for (const key of [...this.present]) if (key.startsWith(`${contentId}/`)) this.present.delete(key);
    await fsp.rm(path.join(this.dir, contentId), { recursive: true, force: true });
  }

  /** Synchronous existence check of the backing file (for tests). */
  fileExists(k: ShardKey): boolean {
    return fs.existsSync(this.file(k));
  }
}
