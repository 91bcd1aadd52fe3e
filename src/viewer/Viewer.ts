/**
 * The viewer: loads the ShardMap, asks the pool who holds what, fetches shards
 * ahead of the playhead over WebRTC, verifies every one, and hands them to the
 * Reconstructor in map order.
 *
 * For each shard the sources are tried in order (DESIGN.md): its holders, the
 * same shard in a lower rendition, the server cache, and finally a skip that
 * playback jumps over. Every step is recorded per shard for the timeline.
 *
 * This class is the composition root and owns the play state, the timeline
 * cells up to `ready`/`skipped`, the stats and the fetch window; its
 * controllers talk to it through typed events: ShardSources (holders, peers,
 * cache), the ABR (./abr.ts) and the AppendQueue (map order, concealment).
 */
import { apiUrl } from '../shared/api.ts';
import { TypedEmitter } from '../shared/events.ts';
import { PeerManager } from '../net/PeerManager.ts';
import { PoolClient, poolUrl, readInit } from '../net/PoolClient.ts';
import type { ShardTransfer } from '../net/ShardTransfer.ts';
import { isAudioRendition, isVideoRendition, mapEnd, parseShardMap, type ShardMap, type VideoRendition } from '../shared/shardMap.ts';
import type { ViewerConfig } from './config.ts';
import { assembleMp4, type ExportReport } from '../shared/exportMp4.ts';
import { nextThroughput, videoOrder } from './abr.ts';
import { AppendQueue } from './AppendQueue.ts';
import { Reconstructor, type Track } from './Reconstructor.ts';
import { ShardSources } from './ShardSources.ts';

export type PlayState = 'loading' | 'playing' | 'stalled' | 'ended' | 'error';

/** Where one shard of one track came from, for the timeline. */
export interface CellState {
  status: 'pending' | 'fetching' | 'ready' | 'appended' | 'skipped';
  /** A peer id, 'cache', or undefined. */
  source?: string;
  rendition?: string;
  /** Sources tried that failed, with why. */
  failures: string[];
  ms?: number;
  /** How a skipped shard's hole was covered: a held frame, silence, or a seek over it. */
  concealed?: 'hold' | 'silence' | 'seek';
}

export interface ViewerStats {
  peers: number;
  bytes: number;
  /** Average over the fetches so far, bits/s. */
  throughputBps: number;
  bufferAhead: number;
  stalls: number;
  stallMs: number;
  fromPeers: number;
  fromCache: number;
  skipped: number;
  hashFailures: number;
  /** Video rendition changes between consecutive shards, and codec changes among them (changeType). */
  renditionSwitches: number;
  codecSwitches: number;
  /** From opening the page (navigation start) to the first frame playing, ms. */
  firstFrameMs: number | undefined;
  /** Per shard: from asking to holding it verified, connecting included, ms. */
  fetchMs: number[];
  /** Per shard fetched from a peer: the transfer over an open channel alone, ms. */
  transferMs: number[];
}

export interface ViewerEvents {
  update: { state: PlayState };
  cell: { track: Track; index: number };
  /** The stats (and `currentRendition`) were refreshed: once per tick, every 100 ms while playing. */
  stats: Record<string, never>;
}

export class Viewer extends TypedEmitter<ViewerEvents> {
  state: PlayState = 'loading';
  error: string | undefined;
  map: ShardMap | undefined;
  readonly cells: { video: CellState[]; audio: CellState[] } = { video: [], audio: [] };
  readonly stats: ViewerStats = {
    peers: 0,
    bytes: 0,
    throughputBps: 0,
    bufferAhead: 0,
    stalls: 0,
    stallMs: 0,
    fromPeers: 0,
    fromCache: 0,
    skipped: 0,
    hashFailures: 0,
    renditionSwitches: 0,
    codecSwitches: 0,
    firstFrameMs: undefined,
    fetchMs: [],
    transferMs: [],
  };
  private pool: PoolClient | undefined;
  private peers: PeerManager | undefined;
  private sources: ShardSources | undefined;
  private queue: AppendQueue | undefined;
  private recon: Reconstructor | undefined;
  private readonly inFlight = new Set<string>();
  private readonly firstMissing = new Map<string, number>();
  private videoRenditions: VideoRendition[] = [];
  /** The audio rendition's id: found by its `audio` field, so a ladder may name it as it likes. */
  private audioId: string | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private stallStarted: number | undefined;
  private readonly openedAt = performance.now();
  /** Rendition the ABR chose last (for the stats line). */
  currentRendition: string | undefined;

  constructor(
    readonly contentId: string,
    readonly video: HTMLVideoElement,
    readonly config: ViewerConfig,
  ) {
    super();
  }

  private setState(s: PlayState): void {
    if (this.state === s || this.state === 'error' || (this.state === 'ended' && s !== 'error')) return;
    this.state = s;
    this.emit('update', { state: s });
  }

  fail(msg: string): void {
    this.error = msg;
    this.setState('error');
    this.stop();
  }

  async start(): Promise<void> {
    try {
      const res = await fetch(apiUrl.content(this.contentId), readInit());
      if (!res.ok) throw new Error(res.status === 404 ? `there is no content "${this.contentId}"` : `the server answered ${res.status}`);
      const body = (await res.json()) as { shardMap: unknown };
      this.map = parseShardMap(body.shardMap);
    } catch (e) {
      this.fail(`Could not load the shard map: ${(e as Error).message}`);
      return;
    }
    const map = this.map;
    this.videoRenditions = map.renditions.filter(isVideoRendition).sort((a, b) => b.video.bitrate - a.video.bitrate);
    this.audioId = map.renditions.find(isAudioRendition)?.id;
    for (const s of map.shards) {
      this.cells.video.push({ status: this.videoRenditions.length ? 'pending' : 'skipped', failures: [] });
      this.cells.audio.push({ status: this.audioId !== undefined && s.renditions[this.audioId] ? 'pending' : 'skipped', failures: [] });
    }
    this.recon = new Reconstructor(this.video, mapEnd(map));
    this.queue = this.appendQueue(map, this.recon);
    this.pool = new PoolClient({ url: poolUrl(), hello: () => ({ role: 'viewer' }) });
    this.peers = new PeerManager(this.pool, { maxPeers: this.config.maxPeers, connectTimeoutMs: this.config.connectTimeoutMs });
    this.sources = new ShardSources(this.contentId, map, this.config, this.pool, this.peers);
    this.sources.on('peers', ({ open }) => (this.stats.peers = open));
    this.sources.on('hash-failure', () => this.stats.hashFailures++);
    this.pool.connect();
    this.watchElement();
    await this.recon.open();
    this.timer = setInterval(() => this.tick(), 100);
    this.tick();
  }

  private appendQueue(map: ShardMap, recon: Reconstructor): AppendQueue {
    const q = new AppendQueue(map, recon, this.cells, this.config.keepForDownloadBytes);
    q.on('cell', (e) => this.emit('cell', e));
    q.on('video-appended', ({ rendition, codecSwitches }) => {
      if (this.currentRendition !== undefined && this.currentRendition !== rendition) this.stats.renditionSwitches++;
      this.stats.codecSwitches = codecSwitches;
      this.currentRendition = rendition;
    });
    q.on('ended', ({ playable }) => {
      if (playable) return;
      this.setState('ended');
      this.stop();
    });
    q.on('error', ({ message }) => this.fail(message));
    return q;
  }

  /** Play state from the element's own events: stalls, first frame, end, failure. */
  private watchElement(): void {
    this.video.addEventListener('waiting', () => {
      if (this.state === 'playing') {
        this.stats.stalls++;
        this.stallStarted = performance.now();
        this.setState('stalled');
      }
    });
    this.video.addEventListener('playing', () => {
      if (this.stallStarted !== undefined) this.stats.stallMs += performance.now() - this.stallStarted;
      this.stallStarted = undefined;
      this.stats.firstFrameMs ??= performance.now();
      this.setState('playing');
    });
    this.video.addEventListener('ended', () => {
      this.setState('ended');
      // Keep the pool and peer links: the download button may still need shards from them.
      clearInterval(this.timer);
    });
    this.video.addEventListener('error', () => this.fail(`The video element failed: ${this.video.error?.message ?? 'unknown error'}`));
  }

  stop(): void {
    clearInterval(this.timer);
    this.peers?.closeAll();
    this.pool?.close();
  }

  /** The transfer to a peer (connecting if needed): what the benchmarks time directly. */
  transferTo(peerId: string): Promise<ShardTransfer> {
    if (!this.sources) throw new Error('the viewer has not started');
    return this.sources.transferTo(peerId);
  }

  /** The shards the window wants next, as [track, index]. */
  private wanted(): [Track, number][] {
    const map = this.map!;
    const now = this.video.currentTime;
    const horizon = now + this.config.lookAheadSeconds;
    const out: [Track, number][] = [];
    for (let i = Math.min(this.queue!.next.video, this.queue!.next.audio); i < map.shards.length; i++) {
      const s = map.shards[i]!;
      if (s.start > horizon && out.length > 0) break;
      for (const track of ['video', 'audio'] as const) {
        const c = this.cells[track][i]!;
        if (c.status === 'pending' && !this.inFlight.has(`${track}/${i}`)) out.push([track, i]);
      }
    }
    return out;
  }

  private tick(): void {
    if (!this.map || !this.recon || !this.sources || !this.queue || this.state === 'error') return;
    const now = performance.now();
    this.sources.maybeLocate(Math.max(0, Math.min(this.queue.next.video, this.queue.next.audio)), now);
    if (this.sources.knowsHolders || now - this.openedAt > 3000) {
      for (const [track, i] of this.wanted()) {
        if (this.inFlight.size >= this.config.maxConcurrentFetches) break;
        void this.fetchShard(track, i);
      }
    }
    this.stats.bufferAhead = Math.max(0, this.recon.bufferedAhead(this.video.currentTime) - this.video.currentTime);
    this.maybePlay();
    this.emit('stats', {});
  }

  /** Renditions to try for shard `index` of `track`: the ABR's order for video, the one audio rendition for audio. */
  private renditionsFor(track: Track, index: number): string[] {
    if (track === 'audio') return this.audioId !== undefined ? [this.audioId] : [];
    const bps = this.stats.throughputBps || this.config.abrInitialBps;
    return videoOrder(this.videoRenditions, bps, this.config.abrSafety, (id) => this.sources!.held(id, index));
  }

  private async fetchShard(track: Track, index: number): Promise<void> {
    const key = `${track}/${index}`;
    this.inFlight.add(key);
    const cell = this.cells[track][index]!;
    cell.status = 'fetching';
    this.emit('cell', { track, index });
    const t0 = performance.now();
    try {
      const result = await this.sources!.fetch(index, this.renditionsFor(track, index), cell.failures);
      if (!result) this.missed(track, index, cell);
      else {
        cell.status = 'ready';
        cell.source = result.source;
        cell.rendition = result.rendition;
        cell.ms = performance.now() - t0;
        this.queue!.put(track, index, result);
        this.stats.bytes += result.bytes.byteLength;
        this.stats.fetchMs.push(cell.ms);
        if (result.source !== 'cache') this.stats.transferMs.push(result.transferMs);
        this.stats.throughputBps = nextThroughput(this.stats.throughputBps, result.bytes.byteLength, result.transferMs);
        if (result.source === 'cache') this.stats.fromCache++;
        else this.stats.fromPeers++;
      }
    } finally {
      this.inFlight.delete(key);
      this.emit('cell', { track, index });
      await this.queue!.appendReady();
      this.maybePlay();
    }
  }

  /** Nobody had the shard: wait a little (it may be being encoded), then skip it. */
  private missed(track: Track, index: number, cell: CellState): void {
    const key = `${track}/${index}`;
    const since = this.firstMissing.get(key) ?? performance.now();
    this.firstMissing.set(key, since);
    const deadline = this.map!.shards[index]!.start - this.video.currentTime;
    const waited = performance.now() - since;
    // Before playback starts the playhead does not move, so a shard that blocks the start is given up on by time instead.
    const blocksStart =
      this.state === 'loading' &&
      index === this.cells[track].findIndex((c) => c.status === 'pending' || c.status === 'fetching') &&
      waited > this.config.startWaitMs;
    if ((waited > this.config.missingGraceMs && deadline < 1) || blocksStart) {
      cell.status = 'skipped';
      this.stats.skipped++;
    } else {
      cell.status = 'pending';
    }
  }

  /**
   * The reconstructed stream as one MP4 (packets copied, nothing re-encoded),
   * in the video rendition played most. Shards played in another rendition, or
   * no longer kept, are fetched again in that rendition the usual way (peers,
   * then the cache); what cannot be had is held or silent, as in playback.
   * Throws when the map is not loaded yet, or as assembleMp4 does.
   */
  async download(onProgress?: (done: number, total: number) => void): Promise<{ bytes: Uint8Array; report: ExportReport }> {
    const map = this.map;
    if (!map || !this.sources || !this.queue) throw new Error('the shard map is not loaded yet');
    const { sources, queue } = this;
    const counts = new Map<string, number>();
    for (const c of this.cells.video) if (c.status === 'appended' && c.rendition) counts.set(c.rendition, (counts.get(c.rendition) ?? 0) + 1);
    const videoRendition = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
    const get = async (rendition: string, index: number): Promise<Uint8Array | undefined> =>
      queue.kept(rendition, index) ?? (await sources.fetch(index, [rendition], []))?.bytes;
    return assembleMp4(map, get, { ...(videoRendition && { videoRendition }), ...(onProgress && { onProgress }) });
  }

  private maybePlay(): void {
    if (!this.recon || this.state !== 'loading' || !this.video.paused) return;
    const ahead = this.recon.bufferedAhead(this.video.currentTime) - this.video.currentTime;
    const allIn = this.queue?.ended ?? false;
    if (ahead >= this.config.startBufferSeconds || allIn) {
      this.video.play().catch((e: Error) => {
        // Autoplay with sound may be refused until the person interacts.
        this.error = `Press play to start (${e.message})`;
        this.emit('update', { state: this.state });
      });
    }
  }
}
