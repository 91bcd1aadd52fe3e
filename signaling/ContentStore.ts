/**
 * Durable store of published contents: source files, probe facts, shard maps,
 * and the registry of accepted shard variants.
 *
 * Layout under dataDir:
 *   tmp/                          uploads in progress (emptied at start)
 *   contents/<id>/source.<ext>    the uploaded file
 *   contents/<id>/meta.json       name, dates, probe facts (without per-frame times)
 *   contents/<id>/map.json        ShardMap snapshot
 *   contents/<id>/accepted.jsonl  accepted variants since the snapshot, one JSON line each
 *   contents/.staging-<id>/       a content being published (renamed into place when whole)
 *
 * Accepted shards are appended to the log synchronously, so a crash right
 * after `shard-accepted` loses nothing; snapshots are rewritten lazily and the
 * log is replayed over them at start.
 *
 * The store is the only writer of shard-variant state (accept, revoke, mark
 * failed). A variant's public `status` is computed, never stored: failed if
 * marked, ready if accepted (and not orphaned), encoding if a job has it in
 * flight, else pending. The live half (in flight, orphaned) comes from the
 * pool through setLiveState; it is not written to disk.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ProbeFacts } from '../src/shared/media.ts';
import { parseShardMap, readiness, type ShardMap, type ShardRenditionState, type ShardStatus } from '../src/shared/shardMap.ts';
import { variantKeyString } from '../src/shared/variantKey.ts';
import { readJson, removeTempFiles, writeFileAtomic, writeFileAtomicSync } from './fsutil.ts';
import { ShardcastError } from '../src/shared/errors.ts';

export type StoredFacts = Omit<ProbeFacts, 'video'> & {
  video?: Omit<NonNullable<ProbeFacts['video']>, 'frameTimes'> & { frameCount: number };
};

export interface ContentMeta {
  id: string;
  name: string;
  createdAt: string;
  sourceFile: string;
  facts: StoredFacts;
}

export interface Content {
  meta: ContentMeta;
  map: ShardMap;
}

export type ContentStatus = 'encoding' | 'ready' | 'failed';

export interface ContentSummary {
  id: string;
  name: string;
  status: ContentStatus;
  duration: number;
  shards: number;
  renditions: string[];
  ready: number;
  total: number;
  createdAt: string;
}

interface AcceptedLine {
  rendition: string;
  index: number;
  /** A revocation: the variant accepted before is withdrawn (its encoder was caught cheating) and the shard is encoded again. */
  revoked?: true;
  sha256: string;
  size: number;
  engine?: string;
  lead?: number;
  tail?: number;
}

export type AcceptedVariant = Pick<AcceptedLine, 'sha256' | 'size' | 'engine' | 'lead' | 'tail'>;

/** The pool's live state of a variant, which the public status depends on; `key` is variantKeyString()'s form. */
export interface LiveVariantState {
  /** A job has it in flight. */
  encoding(key: string): boolean;
  /** Accepted, but its last holder is gone and it is to be encoded again. */
  orphaned(key: string): boolean;
}

const NO_LIVE_STATE: LiveVariantState = { encoding: () => false, orphaned: () => false };

function acceptedFields(a: AcceptedVariant): Partial<ShardRenditionState> {
  return {
    sha256: a.sha256,
    size: a.size,
    ...(a.engine !== undefined && { engine: a.engine }),
    ...(a.lead !== undefined && { lead: a.lead }),
    ...(a.tail !== undefined && { tail: a.tail }),
  };
}

function withdraw(st: ShardRenditionState): void {
  delete st.sha256;
  delete st.size;
  delete st.engine;
  delete st.lead;
  delete st.tail;
}

export function contentStatus(map: ShardMap): ContentStatus {
  const r = readiness(map);
  if (r.ready === r.total) return 'ready';
  if (r.ready + r.failed === r.total) return 'failed';
  return 'encoding';
}

export function storedFacts(f: ProbeFacts): StoredFacts {
  if (!f.video) return { ...f, video: undefined };
  const { frameTimes, ...video } = f.video;
  return { ...f, video: { ...video, frameCount: frameTimes.length } };
}

export class ContentStore {
  private readonly contents = new Map<string, Content>();
  private readonly snapshotTimers = new Map<string, NodeJS.Timeout>();
  /** Variants marked failed (out of attempts); durable through the snapshot. */
  private readonly failed = new WeakSet<ShardRenditionState>();
  private live: LiveVariantState = NO_LIVE_STATE;
  private closed = false;
  readonly contentsDir: string;
  readonly tmpDir: string;

  constructor(
    readonly dataDir: string,
    private readonly snapshotDelayMs = 500,
  ) {
    this.contentsDir = path.join(dataDir, 'contents');
    this.tmpDir = path.join(dataDir, 'tmp');
  }

  /** Loads every content from disk, replaying accepted-shard logs, and clears leftovers of interrupted work. */
  async open(): Promise<{ loaded: number; skipped: string[] }> {
    await fsp.mkdir(this.contentsDir, { recursive: true });
    await fsp.rm(this.tmpDir, { recursive: true, force: true });
    await fsp.mkdir(this.tmpDir, { recursive: true });
    const skipped: string[] = [];
    for (const name of await fsp.readdir(this.contentsDir)) {
      const dir = path.join(this.contentsDir, name);
      if (name.startsWith('.staging-')) {
        await fsp.rm(dir, { recursive: true, force: true });
        continue;
      }
      try {
        await removeTempFiles(dir);
        const meta = (await readJson(path.join(dir, 'meta.json'))) as ContentMeta;
        const map = parseShardMap(await readJson(path.join(dir, 'map.json')));
        this.computeStatus(meta.id, map);
        const replayed = this.replay(dir, map);
        this.contents.set(meta.id, { meta, map });
        if (replayed > 0) this.scheduleSnapshot(meta.id);
      } catch (e) {
        skipped.push(`${name}: ${(e as Error).message}`);
      }
    }
    return { loaded: this.contents.size, skipped };
  }

  private replay(dir: string, map: ShardMap): number {
    let n = 0;
    for (const file of ['accepted.jsonl.old', 'accepted.jsonl']) {
      let text: string;
      try {
        text = fs.readFileSync(path.join(dir, file), 'utf8');
      } catch {
        continue;
      }
      if (text && !text.endsWith('\n')) {
        // A crash mid-append left a torn last line: cut it off, or the next
        // append would be glued to it and an acknowledged shard lost.
        const whole = text.lastIndexOf('\n') + 1;
        fs.truncateSync(path.join(dir, file), Buffer.byteLength(text.slice(0, whole)));
        text = text.slice(0, whole);
      }
      for (const line of text.split('\n')) {
        if (!line) continue;
        let a: AcceptedLine;
        try {
          a = JSON.parse(line) as AcceptedLine;
        } catch {
          continue; // a torn last line from a crash mid-append
        }
        const st = map.shards[a.index]?.renditions[a.rendition];
        if (!st) continue;
        this.failed.delete(st);
        if (a.revoked) withdraw(st);
        else Object.assign(st, acceptedFields(a));
        n++;
      }
    }
    return n;
  }

  /** The pool's live state, for computing each variant's public status (the default: nothing in flight or orphaned). */
  setLiveState(live: LiveVariantState): void {
    this.live = live;
  }

  /**
   * Replaces each variant's stored `status` with a computed one (see the
   * module comment). Of a loaded document only 'failed' is kept: 'ready' is
   * the presence of an accepted hash, and 'encoding' (written by older
   * versions) meant nothing after a restart.
   */
  private computeStatus(contentId: string, map: ShardMap): void {
    for (const s of map.shards) {
      for (const [rendition, st] of Object.entries(s.renditions)) {
        if (st.status === 'failed') this.failed.add(st);
        // The key string is made on first read: the scheduler reads statuses in its hot loop.
        let key: string | undefined;
        const keyOf = () => (key ??= variantKeyString({ contentId, rendition, index: s.index }));
        Object.defineProperty(st, 'status', {
          enumerable: true,
          configurable: true,
          get: (): ShardStatus => {
            if (this.failed.has(st)) return 'failed';
            if (st.sha256 !== undefined && !this.live.orphaned(keyOf())) return 'ready';
            return this.live.encoding(keyOf()) ? 'encoding' : 'pending';
          },
        });
      }
    }
  }

  newUploadPath(): string {
    return path.join(this.tmpDir, `upload-${randomBytes(8).toString('hex')}.part`);
  }

  newContentId(): string {
    let id: string;
    do id = randomBytes(6).toString('base64url').replace(/[-_]/g, 'x');
    while (this.contents.has(id));
    return id;
  }

  /**
   * Publishes a content: the upload, its meta and map are put together in a
   * staging directory, which is renamed into place in one step.
   */
  async publish(uploadPath: string, meta: ContentMeta, map: ShardMap): Promise<Content> {
    const staging = path.join(this.contentsDir, `.staging-${meta.id}`);
    await fsp.mkdir(staging, { recursive: true });
    try {
      await fsp.rename(uploadPath, path.join(staging, meta.sourceFile));
      await writeFileAtomic(path.join(staging, 'meta.json'), JSON.stringify(meta, null, 1));
      await writeFileAtomic(path.join(staging, 'map.json'), JSON.stringify(map));
      await fsp.rename(staging, path.join(this.contentsDir, meta.id));
    } catch (e) {
      await fsp.rm(staging, { recursive: true, force: true });
      throw e;
    }
    this.computeStatus(meta.id, map);
    const c = { meta, map };
    this.contents.set(meta.id, c);
    return c;
  }

  get(id: string): Content | undefined {
    return this.contents.get(id);
  }

  all(): Content[] {
    return [...this.contents.values()];
  }

  sourcePath(c: Content): string {
    return path.join(this.contentsDir, c.meta.id, c.meta.sourceFile);
  }

  summary(c: Content): ContentSummary {
    const r = readiness(c.map);
    return {
      id: c.meta.id,
      name: c.meta.name,
      status: contentStatus(c.map),
      duration: c.map.source.duration,
      shards: c.map.shards.length,
      renditions: c.map.renditions.map((x) => x.id),
      ready: r.ready,
      total: r.total,
      createdAt: c.meta.createdAt,
    };
  }

  /** Records an accepted variant durably before returning. */
  accept(id: string, rendition: string, index: number, variant: AcceptedVariant): void {
    const c = this.contents.get(id);
    const st = c?.map.shards[index]?.renditions[rendition];
    if (!c || !st) throw new ShardcastError('unknown-shard', `no shard ${id}/${rendition}/${index}`);
    const line: AcceptedLine = { rendition, index, ...variant };
    fs.appendFileSync(path.join(this.contentsDir, id, 'accepted.jsonl'), JSON.stringify(line) + '\n');
    this.failed.delete(st);
    Object.assign(st, acceptedFields(variant));
    this.scheduleSnapshot(id);
  }

  /** Withdraws an accepted variant durably (logged like an acceptance): the shard is pending again. */
  revoke(id: string, rendition: string, index: number): void {
    const c = this.contents.get(id);
    const st = c?.map.shards[index]?.renditions[rendition];
    if (!c || !st || st.status !== 'ready' || !st.sha256) return;
    const line: AcceptedLine = { rendition, index, revoked: true, sha256: st.sha256, size: st.size ?? 0 };
    fs.appendFileSync(path.join(this.contentsDir, id, 'accepted.jsonl'), JSON.stringify(line) + '\n');
    this.failed.delete(st);
    withdraw(st);
    this.scheduleSnapshot(id);
  }

  /** Marks a variant failed (it ran out of attempts): it is not given out again. Saved with the next snapshot. */
  markFailed(id: string, rendition: string, index: number): void {
    const st = this.contents.get(id)?.map.shards[index]?.renditions[rendition];
    if (!st) throw new Error(`no shard ${id}/${rendition}/${index}`);
    this.failed.add(st);
    this.scheduleSnapshot(id);
  }

  async delete(id: string): Promise<boolean> {
    if (!this.contents.has(id)) return false;
    this.contents.delete(id);
    clearTimeout(this.snapshotTimers.get(id));
    this.snapshotTimers.delete(id);
    const trash = path.join(this.contentsDir, `.staging-deleted-${id}`);
    await fsp.rename(path.join(this.contentsDir, id), trash);
    await fsp.rm(trash, { recursive: true, force: true });
    return true;
  }

  private scheduleSnapshot(id: string): void {
    if (this.closed || this.snapshotTimers.has(id)) return;
    this.snapshotTimers.set(
      id,
      setTimeout(() => {
        this.snapshotTimers.delete(id);
        this.snapshot(id).catch((e: unknown) => console.error(`snapshot of ${id} failed:`, e));
      }, this.snapshotDelayMs),
    );
  }

  private readonly snapshotChain = new Map<string, Promise<void>>();

  /** Rewrites map.json and retires the log entries it now contains. Snapshots of one content never overlap. */
  snapshot(id: string): Promise<void> {
    const prev = this.snapshotChain.get(id) ?? Promise.resolve();
    const next = prev.then(() => this.snapshotNow(id));
    const settled = next.catch(() => undefined);
    this.snapshotChain.set(id, settled);
    void settled.then(() => {
      if (this.snapshotChain.get(id) === settled) this.snapshotChain.delete(id);
    });
    return next;
  }

  private async snapshotNow(id: string): Promise<void> {
    const c = this.contents.get(id);
    if (!c) return;
    const dir = path.join(this.contentsDir, id);
    const log = path.join(dir, 'accepted.jsonl');
    const old = `${log}.old`;
    // Rotate first, synchronously with serialising the map, so that lines
    // appended while the snapshot is written land in the new log.
    try {
      if (fs.existsSync(old)) {
        // A previous snapshot never finished: its lines are older than the log's, so they go
        // first (order matters when a shard was accepted twice). Written whole, then the log
        // goes; a crash in between only replays the log's lines twice, in order.
        const merged = fs.readFileSync(old, 'utf8') + (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
        writeFileAtomicSync(old, merged);
        fs.rmSync(log, { force: true });
      } else if (fs.existsSync(log)) fs.renameSync(log, old);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !this.contents.has(id)) return;
      throw e;
    }
    const json = JSON.stringify(this.persistable(c.map));
    await writeFileAtomic(path.join(dir, 'map.json'), json);
    await fsp.rm(old, { force: true });
  }

  /** The map as it should be on disk: the durable status only (failed, ready when accepted, else pending), no live state. */
  private persistable(map: ShardMap): ShardMap {
    const durable = (st: ShardRenditionState): ShardStatus => (this.failed.has(st) ? 'failed' : st.sha256 !== undefined ? 'ready' : 'pending');
    return {
      ...map,
      shards: map.shards.map((s) => ({
        ...s,
        renditions: Object.fromEntries(Object.entries(s.renditions).map(([k, st]) => [k, { ...st, status: durable(st) }])),
      })),
    };
  }

  /** Writes pending snapshots and stops scheduling new ones (shutdown). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    await Promise.all([...this.snapshotChain.values()]);
  }

  /** Writes every pending snapshot now. */
  async flush(): Promise<void> {
    const ids = [...this.snapshotTimers.keys()];
    for (const id of ids) {
      clearTimeout(this.snapshotTimers.get(id));
      this.snapshotTimers.delete(id);
      await this.snapshot(id);
    }
  }
}
