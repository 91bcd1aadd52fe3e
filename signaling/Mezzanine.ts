/**
 * Owns the sources waiting for a mezzanine: files with a track the server's
 * demuxer cannot read but a volunteer's ffmpeg.wasm decodes (Theora, MPEG-2
 * video, FLAC in Ogg; issue 17 item 5). Each waits in DATA_DIR/normalizing/ID
 * (source + state.json, written atomically) until two different volunteers
 * with the same engine build upload byte-identical MP4s made from it: a
 * mezzanine defines everything downstream, so one volunteer's word is not
 * enough (the same idea as the byte cross-checks; single-thread ffmpeg.wasm
 * x264 is deterministic). The agreed bytes are probed, checked against the
 * census and published as the content's source; the content then proceeds as
 * usual. Job tokens live in memory only: after a restart tabs claim again.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { buildShardMap, type Rendition } from '../src/shared/shardMap.ts';
import { ShardcastError } from '../src/shared/errors.ts';
import type { ContentStore } from './ContentStore.ts';
import { storedFacts } from './ContentStore.ts';
import { readJson, writeFileAtomic } from './fsutil.ts';
import type { ProbeFacts } from '../src/shared/media.ts';
import type { DeclaredTrack } from './media/census.ts';
import { probeFile, type ProbeError } from './media/probe.ts';

/**
 * Codecs (census.ts names) the ffmpeg.wasm core (@ffmpeg/core 0.12.10, a full ffmpeg build) decodes: its
 * decoder list has theora, mpeg1video, mpeg2video, mpeg4, flac, vorbis, opus, mp3 and ac3.
 */
export const VOLUNTEER_DECODABLE: ReadonlySet<string> = new Set(['theora', 'mpeg1video', 'mpeg2video', 'mpeg4', 'flac', 'vorbis', 'opus', 'mpeg-audio', 'ac3']);

/** The engine a mezzanine job needs (a capabilities.engines name); uploads name its build as "ffmpeg-wasm@BUILD". */
export const MEZZANINE_ENGINE = 'ffmpeg-wasm';

/** Distinct volunteers whose byte-identical mezzanines make it accepted. */
const AGREEING = 2;
/** Disagreeing candidates kept per source (bounds the disk a source's jobs take); past it the oldest goes. */
const MAX_CANDIDATES = 4;
/** A mezzanine's duration may differ from the source's readable tracks' by this much, s (a frame or an audio packet at the end). */
const DURATION_TOLERANCE_S = 0.25;

export interface PendingSource {
  id: string;
  name: string;
  /** ISO 8601. */
  createdAt: string;
  sourceFile: string;
  size: number;
  /** Every track the container declares (census.ts): the mezzanine must carry a track of each kind. */
  declared: DeclaredTrack[];
  /** The tracks the server could not read. */
  undecoded: DeclaredTrack[];
  /** End of the tracks the server reads, s; undefined when it reads none. */
  duration?: number;
  shardDuration: number;
  renditions?: Rendition[];
  /** Why it is still waiting, for / and /pool. */
  reason: string;
  /** Uploaded mezzanines by hash, each with the volunteers (peer ids) that made it and their engine build. */
  candidates: { sha256: string; size: number; engine: string; peers: string[] }[];
}

export interface MezzanineJob {
  contentId: string;
  token: string;
  /** Seconds the job may take before its token expires. */
  deadline: number;
}

interface Claim {
  contentId: string;
  peerId: string;
  expires: number;
}

export interface MezzanineOptions {
  /** Largest source a volunteer is asked to fetch whole, bytes (--mezzanine-max-source-bytes). */
  maxSourceBytes: number;
  /** Largest mezzanine upload, bytes (--mezzanine-max-bytes). */
  maxBytes: number;
  /** Time a volunteer has for a job, ms (--mezzanine-deadline-ms). */
  deadlineMs: number;
}

export class Mezzanines {
  private readonly pending = new Map<string, PendingSource>();
  /** Job token -> claim; bounded by one claim per (volunteer, source). */
  private readonly claims = new Map<string, Claim>();
  private readonly dir: string;
  /** Sources whose agreed mezzanine is being probed and published. */
  private readonly publishing = new Set<string>();

  constructor(
    private readonly store: ContentStore,
    readonly options: MezzanineOptions,
    private readonly onPublished: (id: string) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.dir = path.join(store.dataDir, 'normalizing');
  }

  /** Loads the waiting sources; a directory without a readable state is a publish cut short and goes. */
  async open(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
    for (const id of await fsp.readdir(this.dir)) {
      try {
        this.pending.set(id, (await readJson(path.join(this.dir, id, 'state.json'))) as PendingSource);
      } catch {
        await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
      }
    }
  }

  all(): PendingSource[] {
    return [...this.pending.values()];
  }

  get(id: string): PendingSource | undefined {
    return this.pending.get(id);
  }

  /** Whether a source whose undecoded tracks are these waits for a mezzanine rather than being refused. */
  takes(undecoded: DeclaredTrack[]): boolean {
    return undecoded.length > 0 && undecoded.every((t) => VOLUNTEER_DECODABLE.has(t.codec));
  }

  /**
   * Keeps the upload at `file` (moved) as a source waiting for its mezzanine.
   * @throws the probe's `refusal` with the size cap added when the file is over --mezzanine-max-source-bytes.
   */
  async add(
    file: string,
    undecoded: DeclaredTrack[],
    opts: { name: string; shardDuration: number; renditions?: Rendition[] },
    refusal: ProbeError,
  ): Promise<PendingSource> {
    const { size } = await fsp.stat(file);
    if (size > this.options.maxSourceBytes) {
      refusal.message += `; volunteers normalise such files only up to ${this.options.maxSourceBytes} bytes (server option --mezzanine-max-source-bytes)`;
      throw refusal;
    }
    const readable = await probeFile(file, { readableOnly: true }).catch(() => undefined);
    let id: string;
    do id = this.store.newContentId();
    while (this.pending.has(id));
    const p: PendingSource = {
      id,
      ...opts,
      createdAt: new Date(this.now()).toISOString(),
      sourceFile: 'source.bin',
      size,
      declared: [
        ...undecoded,
        ...(['video', 'audio'] as const).filter((type) => readable?.[type]).map((type) => ({ type, codec: readable![type]!.codec as string })),
      ],
      undecoded,
      ...(readable && { duration: readable.duration }),
      reason: `waiting for two volunteers with ffmpeg.wasm to decode the ${undecoded.map((t) => `${t.type} track (${t.codec})`).join(' and ')}`,
      candidates: [],
    };
    const dir = path.join(this.dir, id);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.rename(file, path.join(dir, p.sourceFile));
    await this.save(p);
    this.pending.set(id, p);
    return p;
  }

  /**
   * A mezzanine job for volunteer `peerId` (a connected encoder with ffmpeg.wasm): a waiting source it has not
   * made a mezzanine of, or undefined when there is none.
   */
  claim(peerId: string): MezzanineJob | undefined {
    const t = this.now();
    for (const [token, c] of this.claims) if (c.expires <= t) this.claims.delete(token);
    for (const p of this.pending.values()) {
      if (p.candidates.some((c) => c.peers.includes(peerId))) continue;
      const held = [...this.claims.entries()].find(([, c]) => c.contentId === p.id && c.peerId === peerId);
      const token = held?.[0] ?? randomBytes(18).toString('base64url');
      this.claims.set(token, { contentId: p.id, peerId, expires: t + this.options.deadlineMs });
      return { contentId: p.id, token, deadline: this.options.deadlineMs / 1000 };
    }
    return undefined;
  }

  /**
   * The claim `token` names for source `id`.
   * @throws ShardcastError upload-token-required, bad-upload-token (unknown, expired or for another source).
   */
  checkToken(id: string, token: string | null | undefined): Claim & { source: PendingSource } {
    if (!token) throw new ShardcastError('upload-token-required', 'a mezzanine job needs its token: ?job=<token from the claim>');
    const c = this.claims.get(token);
    const source = this.pending.get(id);
    if (!c || c.contentId !== id || c.expires <= this.now() || !source) {
      throw new ShardcastError('bad-upload-token', 'the mezzanine job token is unknown, expired or for another source: claim the job again');
    }
    return { ...c, source };
  }

  sourcePath(p: PendingSource): string {
    return path.join(this.dir, p.id, p.sourceFile);
  }

  /** A new file for an upload's body, in the store's temporary directory (cleared at start-up). */
  newUploadPath(): string {
    return this.store.newUploadPath();
  }

  /**
   * Records the mezzanine at `file` (moved away or removed) from the claim `token` names, made with `engine`
   * ("ffmpeg-wasm@BUILD"); publishes the content once AGREEING volunteers with one build sent the same bytes.
   * @returns the source's state after it ('published' when it became a content).
   */
  async upload(id: string, token: string, engine: string, file: string): Promise<{ status: 'normalizing' | 'published'; reason: string }> {
    const claim = this.checkToken(id, token);
    if (!engine.startsWith(`${MEZZANINE_ENGINE}@`)) {
      throw new ShardcastError('bad-message', `a mezzanine names its engine build in X-Engine, e.g. ${MEZZANINE_ENGINE}@0.12.10`);
    }
    this.claims.delete(token);
    const p = claim.source;
    const sha256 = await hashFile(file);
    const { size } = await fsp.stat(file);
    let c = p.candidates.find((x) => x.sha256 === sha256 && x.engine === engine);
    if (!c) {
      c = { sha256, size, engine, peers: [] };
      p.candidates.push(c);
      await fsp.rename(file, this.candidatePath(p, sha256));
      while (p.candidates.length > MAX_CANDIDATES) await fsp.rm(this.candidatePath(p, p.candidates.shift()!.sha256), { force: true });
    }
    if (!c.peers.includes(claim.peerId)) c.peers.push(claim.peerId);
    if (c.peers.length < AGREEING) {
      p.reason =
        p.candidates.length > 1
          ? `volunteers' mezzanines disagree (${p.candidates.length} different results); waiting for two that agree`
          : `one volunteer made a mezzanine; waiting for a second one to agree`;
      await this.save(p);
      return { status: 'normalizing', reason: p.reason };
    }
    return this.publish(p, c.sha256);
  }

  /** Probes the agreed mezzanine, checks it against the census and publishes it; a mismatch leaves the source waiting. */
  private async publish(p: PendingSource, sha256: string): Promise<{ status: 'normalizing' | 'published'; reason: string }> {
    // Two agreeing uploads finishing at once: the first publishes.
    if (this.publishing.has(p.id)) return { status: 'normalizing', reason: 'being published from an agreed mezzanine' };
    this.publishing.add(p.id);
    try {
      const file = this.candidatePath(p, sha256);
      const facts = await probeFile(file).catch((e: Error) => e);
      const mismatch = facts instanceof Error ? `it cannot be read (${facts.message})` : this.mismatch(p, facts);
      if (mismatch || facts instanceof Error) {
        p.candidates = p.candidates.filter((c) => c.sha256 !== sha256);
        await fsp.rm(file, { force: true });
        p.reason = `the volunteers' mezzanine was refused: ${mismatch}; waiting for new ones`;
        await this.save(p);
        return { status: 'normalizing', reason: p.reason };
      }
      const map = buildShardMap({ contentId: p.id, facts, shardDuration: p.shardDuration, ...(p.renditions && { renditions: p.renditions }) });
      await this.store.publish(file, { id: p.id, name: p.name, createdAt: p.createdAt, sourceFile: 'source.mp4', facts: storedFacts(facts) }, map);
      this.pending.delete(p.id);
      for (const [token, c] of this.claims) if (c.contentId === p.id) this.claims.delete(token);
      await fsp.rm(path.join(this.dir, p.id), { recursive: true, force: true });
      this.onPublished(p.id);
      return { status: 'published', reason: 'published from the mezzanine' };
    } finally {
      this.publishing.delete(p.id);
    }
  }

  /** Why a mezzanine with these facts cannot stand for the source, or undefined when it can. */
  private mismatch(p: PendingSource, facts: ProbeFacts): string | undefined {
    if (facts.container !== 'mp4') return `it is ${facts.container}, not MP4`;
    for (const type of ['video', 'audio'] as const) {
      const want = p.declared.some((t) => t.type === type);
      if (want !== Boolean(facts[type])) return `the source ${want ? 'has' : 'has no'} ${type} track, the mezzanine ${facts[type] ? 'has' : 'has none'}`;
    }
    if (p.duration !== undefined && Math.abs(facts.duration - p.duration) > DURATION_TOLERANCE_S) {
      return `it lasts ${facts.duration.toFixed(3)} s, the source ${p.duration.toFixed(3)} s`;
    }
    return undefined;
  }

  /** Forgets a waiting source (DELETE of its content id); false when there is none. */
  async delete(id: string): Promise<boolean> {
    if (!this.pending.delete(id)) return false;
    await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
    return true;
  }

  private candidatePath(p: PendingSource, sha256: string): string {
    return path.join(this.dir, p.id, `mezzanine-${sha256}.mp4`);
  }

  private async save(p: PendingSource): Promise<void> {
    await writeFileAtomic(path.join(this.dir, p.id, 'state.json'), JSON.stringify(p, null, 1));
  }
}

async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(fs.createReadStream(file), h);
  return h.digest('hex');
}
