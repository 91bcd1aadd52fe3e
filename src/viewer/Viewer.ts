/**
 * The viewer: loads the ShardMap, asks the pool who holds what, fetches shards
 * ahead of the playhead over WebRTC, verifies every one, and hands them to the
 * Reconstructor in map order.
 *
 * For each shard the sources are tried in order (DESIGN.md): its holders, the
 * same shard in a lower rendition, the server cache, and finally a skip that
 * playback jumps over. Every step is recorded per shard for the timeline.
 */
import Peer from 'simple-peer/simplepeer.min.js';
import { TypedEmitter } from '../shared/events.ts';
import { PeerManager, type PeerCtor } from '../net/PeerManager.ts';
import { PoolClient, poolUrl } from '../net/PoolClient.ts';
import type { HolderEntry } from '../shared/protocol.ts';
import { FetchError, ShardTransfer } from '../net/ShardTransfer.ts';
import { AUDIO_RENDITION_ID, isAudioRendition, isVideoRendition, mapEnd, parseShardMap, type ShardMap, type VideoRendition } from '../shared/shardMap.ts';
import { sha256Hex } from '../shared/wire.ts';
import type { ViewerConfig } from './config.ts';
import { assembleMp4, type ExportReport } from '../shared/exportMp4.ts';
import { aacChannelConfigSupported, holdFragment, silenceFragment } from './conceal.ts';
import { codecStringOf, Reconstructor, type Placement, type Track } from './Reconstructor.ts';

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
}

interface Fetched {
  bytes: Uint8Array;
  rendition: string;
  source: string;
  /** The transfer alone, without connecting: what the ABR learns from. */
  transferMs: number;
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
  private readonly transfers = new Map<string, ShardTransfer>();
  private recon: Reconstructor | undefined;
  private holders = new Map<string, HolderEntry>();
  private readonly fetched = { video: new Map<number, Fetched>(), audio: new Map<number, Fetched>() };
  private readonly nextAppend = { video: 0, audio: 0 };
  private readonly inFlight = new Set<string>();
  private readonly codecs = new Map<string, string>();
  private readonly firstMissing = new Map<string, number>();
  private videoRenditions: VideoRendition[] = [];
  private hasAudio = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private locating = false;
  private lastLocate = 0;
  private stallStarted: number | undefined;
  private readonly openedAt = performance.now();
  private ended = false;
  /** Verified shards as played, kept for the download (rendition/index -> bytes), within a byte budget. */
  private readonly played = new Map<string, Uint8Array>();
  private playedBytes = 0;
  /** The last video shard appended: its keyframe is what a hold fragment shows. */
  private lastVideo: Fetched | undefined;
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
      const res = await fetch(`/api/contents/${encodeURIComponent(this.contentId)}`);
      if (!res.ok) throw new Error(res.status === 404 ? `there is no content "${this.contentId}"` : `the server answered ${res.status}`);
      const body = (await res.json()) as { shardMap: unknown };
      this.map = parseShardMap(body.shardMap);
    } catch (e) {
      this.fail(`Could not load the shard map: ${(e as Error).message}`);
      return;
    }
    const map = this.map;
    this.videoRenditions = map.renditions.filter(isVideoRendition).sort((a, b) => b.video.bitrate - a.video.bitrate);
    this.hasAudio = map.renditions.some(isAudioRendition);
    for (const s of map.shards) {
      this.cells.video.push({ status: this.videoRenditions.length ? 'pending' : 'skipped', failures: [] });
      this.cells.audio.push({ status: s.renditions[AUDIO_RENDITION_ID] ? 'pending' : 'skipped', failures: [] });
    }
    this.recon = new Reconstructor(this.video, mapEnd(map));
    this.pool = new PoolClient({ url: poolUrl(), hello: () => ({ role: 'viewer' }) });
    this.peers = new PeerManager(this.pool, Peer as unknown as PeerCtor, { maxPeers: this.config.maxPeers, connectTimeoutMs: this.config.connectTimeoutMs });
    this.peers.on('link', ({ link }) => {
      link.on('open', () => (this.stats.peers = this.peers!.links.filter((l) => l.open).length));
      link.on('close', () => {
        this.transfers.delete(link.remoteId);
        this.stats.peers = this.peers!.links.filter((l) => l.open).length;
      });
    });
    this.pool.connect();
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
    await this.recon.open();
    this.timer = setInterval(() => this.tick(), 100);
    this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.peers?.closeAll();
    this.pool?.close();
  }

  /** The shards the window wants next, as [track, index]. */
  private wanted(): [Track, number][] {
    const map = this.map!;
    const now = this.video.currentTime;
    const horizon = now + this.config.lookAheadSeconds;
    const out: [Track, number][] = [];
    for (let i = Math.min(this.nextAppend.video, this.nextAppend.audio); i < map.shards.length; i++) {
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
    if (!this.map || !this.recon || this.state === 'error') return;
    const now = performance.now();
    if (this.pool?.state === 'open' && !this.locating && now - this.lastLocate > this.config.locateEveryMs) void this.locate();
    if (this.holders.size > 0 || now - this.openedAt > 3000) {
      for (const [track, i] of this.wanted()) {
        if (this.inFlight.size >= this.config.maxConcurrentFetches) break;
        void this.fetchShard(track, i);
      }
    }
    this.stats.bufferAhead = Math.max(0, this.recon.bufferedAhead(this.video.currentTime) - this.video.currentTime);
    this.maybePlay();
  }

  private async locate(): Promise<void> {
    this.locating = true;
    this.lastLocate = performance.now();
    try {
      const from = Math.max(0, Math.min(this.nextAppend.video, this.nextAppend.audio));
      const count = Math.ceil(this.config.lookAheadSeconds / this.map!.shardDuration) + 4;
      const entries = await this.pool!.locate(this.contentId, from, count);
      for (const e of entries) this.holders.set(`${e.rendition}/${e.index}`, e);
    } catch {
      /* not connected yet; next tick */
    } finally {
      this.locating = false;
    }
  }

  /** The ABR: the best video rendition the measured throughput affords, among those available for this shard. */
  private videoOrder(index: number): string[] {
    const bps = this.stats.throughputBps || this.config.abrInitialBps;
    const affordable = this.videoRenditions.filter((r) => r.video.bitrate <= bps * this.config.abrSafety);
    const startAt = affordable.length ? this.videoRenditions.indexOf(affordable[0]!) : this.videoRenditions.length - 1;
    // From the chosen rung down: a lower rendition is the fallback, never a higher one.
    const order = this.videoRenditions.slice(startAt).map((r) => r.id);
    const available = (id: string) => (this.holders.get(`${id}/${index}`)?.peers.length ?? 0) > 0;
    // Prefer a rendition someone holds over an unheld higher one.
    return [...order.filter(available), ...order.filter((id) => !available(id))];
  }

  private async fetchShard(track: Track, index: number): Promise<void> {
    const key = `${track}/${index}`;
    this.inFlight.add(key);
    const cell = this.cells[track][index]!;
    cell.status = 'fetching';
    this.emit('cell', { track, index });
    const t0 = performance.now();
    try {
      const renditions = track === 'video' ? this.videoOrder(index) : [AUDIO_RENDITION_ID];
      const got = await this.fromPeers(track, index, renditions, cell);
      const result = got ?? (this.config.cache ? await this.fromCache(index, renditions, cell) : undefined);
      if (!result) {
        // Nobody has it yet: wait a little (it may be being encoded), then skip.
        const since = this.firstMissing.get(key) ?? performance.now();
        this.firstMissing.set(key, since);
        const deadline = this.map!.shards[index]!.start - this.video.currentTime;
        const waited = performance.now() - since;
        // Before playback starts the playhead does not move, so a shard that blocks the start is given up on by time instead.
        const blocksStart = this.state === 'loading' && index === this.cells[track].findIndex((c) => c.status === 'pending' || c.status === 'fetching') && waited > this.config.startWaitMs;
        if ((waited > this.config.missingGraceMs && deadline < 1) || blocksStart) {
          cell.status = 'skipped';
          this.stats.skipped++;
        } else {
          cell.status = 'pending';
        }
      } else {
        cell.status = 'ready';
        cell.source = result.source;
        cell.rendition = result.rendition;
        cell.ms = performance.now() - t0;
        this.fetched[track].set(index, result);
        this.stats.bytes += result.bytes.byteLength;
        this.stats.fetchMs.push(cell.ms);
        if (result.source !== 'cache') this.stats.transferMs.push(result.transferMs);
        // A moving average of per-transfer rates: recent transfers count most, and a peer connection's setup is not a rate.
        const bps = (result.bytes.byteLength * 8) / (Math.max(1, result.transferMs) / 1000);
        this.stats.throughputBps = this.stats.throughputBps ? 0.7 * this.stats.throughputBps + 0.3 * bps : bps;
        if (result.source === 'cache') this.stats.fromCache++;
        else this.stats.fromPeers++;
      }
    } finally {
      this.inFlight.delete(key);
      this.emit('cell', { track, index });
      await this.appendReady();
    }
  }

  private async fromPeers(track: Track, index: number, renditions: string[], cell: CellState): Promise<Fetched | undefined> {
    for (const rendition of renditions) {
      const h = this.holders.get(`${rendition}/${index}`);
      if (!h?.sha256) continue;
      // Spread load: connected peers first, then the others in random order.
      const peers = [...h.peers].sort(() => Math.random() - 0.5).sort((a, b) => Number(this.transfers.has(b)) - Number(this.transfers.has(a)));
      for (const peerId of peers) {
        try {
          const t = await this.transferTo(peerId);
          const t0 = performance.now();
          const { bytes } = await t.fetch({ contentId: this.contentId, rendition, index }, h.sha256, this.config.fetchTimeoutMs);
          return { bytes, rendition, source: peerId, transferMs: performance.now() - t0 };
        } catch (e) {
          const err = e as FetchError;
          cell.failures.push(`${peerId.slice(0, 6)} ${rendition}: ${err.code ? `${err.code} (${err.message.slice(0, 100)})` : err.message}`);
          if (err.code === 'hash-mismatch') {
            this.stats.hashFailures++;
            this.pool?.send({ type: 'report-peer', peerId, key: { contentId: this.contentId, rendition, index }, reason: 'hash mismatch' });
          }
          if (err.code === 'absent') h.peers = h.peers.filter((p) => p !== peerId);
        }
      }
      if (track === 'audio') break;
    }
    return undefined;
  }

  private async transferTo(peerId: string): Promise<ShardTransfer> {
    let t = this.transfers.get(peerId);
    if (t && !t.link.closed) return t;
    const link = await this.peers!.connect(peerId);
    t = ShardTransfer.of(link);
    this.transfers.set(peerId, t);
    return t;
  }

  private async fromCache(index: number, renditions: string[], cell: CellState): Promise<Fetched | undefined> {
    for (const rendition of renditions) {
      const sha = this.map!.shards[index]!.renditions[rendition]?.sha256 ?? this.holders.get(`${rendition}/${index}`)?.sha256;
      if (!sha) continue;
      try {
        const t0 = performance.now();
        const res = await fetch(`/api/contents/${encodeURIComponent(this.contentId)}/shards/${rendition}/${index}`);
        if (!res.ok) {
          cell.failures.push(`cache ${rendition}: ${res.status}`);
          continue;
        }
        const bytes = new Uint8Array(await res.arrayBuffer());
        if ((await sha256Hex(bytes)) !== sha) {
          this.stats.hashFailures++;
          cell.failures.push(`cache ${rendition}: hash mismatch`);
          continue;
        }
        return { bytes, rendition, source: 'cache', transferMs: performance.now() - t0 };
      } catch (e) {
        cell.failures.push(`cache ${rendition}: ${(e as Error).message}`);
      }
    }
    return undefined;
  }

  private appending = false;

  /** Appends whatever is next in map order, per track; skipped shards become holes. */
  private async appendReady(): Promise<void> {
    if (this.appending || !this.map || !this.recon) return;
    this.appending = true;
    try {
      if (!this.recon.initialised) {
        // Every track's codec must be known before the first append (see Reconstructor.init).
        const codecs: Partial<Record<Track, string>> = {};
        for (const track of ['video', 'audio'] as const) {
          const present = this.cells[track].some((c) => c.status !== 'skipped');
          if (!present) continue;
          const first = [...this.fetched[track].values()][0];
          if (!first) return;
          codecs[track] = await this.codecOf(first);
        }
        await this.recon.init(codecs);
      }
      let progressed = true;
      while (progressed) {
        progressed = false;
        for (const track of ['video', 'audio'] as const) {
          const i = this.nextAppend[track];
          if (i >= this.map.shards.length) continue;
          const cell = this.cells[track][i]!;
          const placement = this.placement(track, i, this.fetched[track].get(i)?.rendition);
          if (cell.status === 'skipped') {
            const how = await this.conceal(track, i);
            if (how === 'wait') continue;
            cell.concealed = how;
            this.nextAppend[track]++;
            this.emit('cell', { track, index: i });
            progressed = true;
          } else if (cell.status === 'ready') {
            const f = this.fetched[track].get(i)!;
            await this.recon.append(track, await this.codecOf(f), f.bytes, placement!);
            if (track === 'video') {
              if (this.currentRendition !== undefined && this.currentRendition !== f.rendition) this.stats.renditionSwitches++;
              this.stats.codecSwitches = this.recon.codecSwitches;
              this.currentRendition = f.rendition;
              this.lastVideo = f;
            }
            cell.status = 'appended';
            this.fetched[track].delete(i);
            if (this.playedBytes + f.bytes.byteLength <= this.config.keepForDownloadBytes) {
              this.played.set(`${f.rendition}/${i}`, f.bytes);
              this.playedBytes += f.bytes.byteLength;
            }
            this.nextAppend[track]++;
            this.emit('cell', { track, index: i });
            progressed = true;
          }
        }
      }
      const n = this.map.shards.length;
      if (!this.ended && this.nextAppend.video >= n && this.nextAppend.audio >= n) {
        this.ended = true;
        if (!this.recon.initialised) {
          // Not one shard of any track could be had: there is nothing to play.
          this.setState('ended');
          this.stop();
          return;
        }
        await this.recon.end();
      }
    } catch (e) {
      this.fail(`Could not append a shard: ${(e as Error).message}`);
    } finally {
      this.appending = false;
    }
    this.maybePlay();
  }

  /**
   * The reconstructed stream as one MP4 (packets copied, nothing re-encoded),
   * in the video rendition played most. Shards played in another rendition, or
   * no longer kept, are fetched again in that rendition the usual way (peers,
   * then the cache); what cannot be had is held or silent, as in playback.
   */
  async download(onProgress?: (done: number, total: number) => void): Promise<{ bytes: Uint8Array; report: ExportReport }> {
    const map = this.map;
    if (!map) throw new Error('the shard map is not loaded yet');
    const counts = new Map<string, number>();
    for (const c of this.cells.video) if (c.status === 'appended' && c.rendition) counts.set(c.rendition, (counts.get(c.rendition) ?? 0) + 1);
    const videoRendition = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
    const get = async (rendition: string, index: number): Promise<Uint8Array | undefined> => {
      const kept = this.played.get(`${rendition}/${index}`);
      if (kept) return kept;
      const track: Track = rendition === AUDIO_RENDITION_ID ? 'audio' : 'video';
      const scratch: CellState = { status: 'fetching', failures: [] };
      const got = (await this.fromPeers(track, index, [rendition], scratch)) ?? (this.config.cache ? await this.fromCache(index, [rendition], scratch) : undefined);
      return got?.bytes;
    };
    return assembleMp4(map, get, { ...(videoRendition && { videoRendition }), ...(onProgress && { onProgress }) });
  }

  /**
   * Covers the hole of skipped shard `index` so the element never waits at it
   * (DESIGN.md: a hole stalls Chromium forever). 'wait' means a frame to hold
   * may still come, so the track does not move on yet.
   */
  private async conceal(track: Track, index: number): Promise<'hold' | 'silence' | 'seek' | 'wait'> {
    const recon = this.recon!;
    const map = this.map!;
    const s = map.shards[index]!;
    if (track === 'video') {
      const source = this.lastVideo ?? [...this.fetched.video.values()][0];
      if (!source) {
        if (this.cells.video.some((c) => c.status !== 'skipped' && c.status !== 'appended')) return 'wait';
      } else if (recon.has('video')) {
        try {
          const hold = await holdFragment(source.bytes, s.duration);
          await recon.append('video', hold.codec, hold.bytes, { start: s.start, duration: s.duration });
          return 'hold';
        } catch (e) {
          this.cells.video[index]!.failures.push(`hold: ${(e as Error).message}`);
        }
      }
    } else {
      const r = map.renditions.find((x) => x.id === AUDIO_RENDITION_ID);
      const st = s.renditions[AUDIO_RENDITION_ID];
      if (r && isAudioRendition(r) && st?.start !== undefined && st.samples && r.audio.codec === 'aac' && aacChannelConfigSupported(r.audio.channels) && recon.has('audio')) {
        const sr = r.audio.sampleRate;
        const bytes = await silenceFragment(sr, r.audio.channels, st.samples);
        const covered = Math.ceil(st.samples / 1024) * 1024;
        await recon.append('audio', this.audioCodec(), bytes, { start: st.start, duration: st.samples / sr, tail: (covered - st.samples) / sr });
        return 'silence';
      }
    }
    const at = this.placement(track, index, undefined);
    if (at) recon.skip(track, at);
    return 'seek';
  }

  /** The audio SourceBuffer's codec string: silence must not trigger a changeType. */
  private audioCodec(): string {
    return this.codecs.get(AUDIO_RENDITION_ID) ?? 'mp4a.40.2';
  }

  private async codecOf(f: Fetched): Promise<string> {
    let codec = this.codecs.get(f.rendition);
    if (!codec) {
      codec = await codecStringOf(f.bytes);
      this.codecs.set(f.rendition, codec);
    }
    return codec;
  }

  private placement(track: Track, index: number, rendition: string | undefined): Placement | undefined {
    const s = this.map!.shards[index]!;
    if (track === 'video') return { start: s.start, duration: s.duration };
    const st = s.renditions[rendition ?? AUDIO_RENDITION_ID];
    const r = this.map!.renditions.find((x) => x.id === AUDIO_RENDITION_ID);
    if (!st || !r || !isAudioRendition(r) || st.start === undefined || st.samples === undefined) return undefined;
    const sr = r.audio.sampleRate;
    return { start: st.start, duration: st.samples / sr, lead: (st.lead ?? 0) / sr, tail: (st.tail ?? 0) / sr };
  }

  private maybePlay(): void {
    if (!this.recon || this.state !== 'loading' || !this.video.paused) return;
    const ahead = this.recon.bufferedAhead(this.video.currentTime) - this.video.currentTime;
    const allIn = this.ended;
    if (ahead >= this.config.startBufferSeconds || allIn) {
      this.video.play().catch((e: Error) => {
        // Autoplay with sound may be refused until the person interacts.
        this.error = `Press play to start (${e.message})`;
        this.emit('update', { state: this.state });
      });
    }
  }
}
