/**
 * The viewer's append queue: owns the verified shards waiting for their turn,
 * the next shard to append per track, the codec string of each rendition,
 * and the shards kept for the download. It appends in map order, per track,
 * to the Reconstructor, and covers a skipped shard's hole (a held frame,
 * silence, or a seek over it) so the element never waits at it. It moves a
 * timeline cell from `ready` or `skipped` to `appended` or concealed; the
 * Viewer owns every earlier step.
 */
import { TypedEmitter } from '../shared/events.ts';
import { isAudioRendition, type AudioRendition, type ShardMap } from '../shared/shardMap.ts';
import { aacChannelConfigSupported, holdFragment, silenceFragment } from './conceal.ts';
import { codecStringOf, type Placement, type Reconstructor, type Track } from './Reconstructor.ts';
import type { Fetched } from './ShardSources.ts';
import type { CellState } from './Viewer.ts';

export interface AppendQueueEvents {
  /** A cell changed (appended or concealed). */
  cell: { track: Track; index: number };
  /** A video shard went into the SourceBuffer, in `rendition`; `codecSwitches` is the Reconstructor's count so far. */
  'video-appended': { rendition: string; codecSwitches: number };
  /** Every shard of every track is in or concealed; `playable` is false when not one shard could be had. */
  ended: { playable: boolean };
  /** Appending failed; the message is for the page. */
  error: { message: string };
}

export class AppendQueue extends TypedEmitter<AppendQueueEvents> {
  private readonly ready = { video: new Map<number, Fetched>(), audio: new Map<number, Fetched>() };
  /** The next shard index to append, per track. */
  readonly next = { video: 0, audio: 0 };
  private readonly codecs = new Map<string, string>();
  /** Verified shards as played, kept for the download (rendition/index -> bytes), within a byte budget. */
  private readonly played = new Map<string, Uint8Array>();
  private playedBytes = 0;
  /** The last video shard appended: its keyframe is what a hold fragment shows. */
  private lastVideo: Fetched | undefined;
  private appending = false;
  /** appendReady was called while it ran. */
  private again = false;
  private failed = false;
  private done = false;
  private readonly audio: AudioRendition | undefined;

  constructor(
    private readonly map: ShardMap,
    private readonly recon: Reconstructor,
    private readonly cells: { video: CellState[]; audio: CellState[] },
    private readonly keepForDownloadBytes: number,
  ) {
    super();
    this.audio = map.renditions.find(isAudioRendition);
  }

  /** Whether every shard of every track has been appended or concealed. */
  get ended(): boolean {
    return this.done;
  }

  /** Queues verified shard `index` of `track` for its turn. */
  put(track: Track, index: number, f: Fetched): void {
    this.ready[track].set(index, f);
  }

  /** A shard file as played, if it is still kept (for the download). */
  kept(rendition: string, index: number): Uint8Array | undefined {
    return this.played.get(`${rendition}/${index}`);
  }

  /**
   * Appends whatever is next in map order, per track; skipped shards become
   * covered holes. A call made while one runs is not lost: the running one
   * goes round again (a shard skipped meanwhile may be the last one). Never
   * throws: failures are `error` events.
   */
  async appendReady(): Promise<void> {
    if (this.appending) {
      this.again = true;
      return;
    }
    this.appending = true;
    try {
      do {
        this.again = false;
        await this.drain();
      } while (this.again && !this.failed);
    } catch (e) {
      this.failed = true;
      this.emit('error', { message: `Could not append a shard: ${(e as Error).message}` });
    } finally {
      this.appending = false;
    }
  }

  private async drain(): Promise<void> {
    if (!this.recon.initialised && !(await this.init())) return;
    while (await this.step()) {
      /* until neither track can move */
    }
    const n = this.map.shards.length;
    if (!this.done && this.next.video >= n && this.next.audio >= n) {
      this.done = true;
      if (!this.recon.initialised) {
        // Not one shard of any track could be had: there is nothing to play.
        this.emit('ended', { playable: false });
        return;
      }
      await this.recon.end();
      this.emit('ended', { playable: true });
    }
  }

  /** Every track's codec must be known before the first append (see Reconstructor.init): false while one is missing. */
  private async init(): Promise<boolean> {
    const codecs: Partial<Record<Track, string>> = {};
    for (const track of ['video', 'audio'] as const) {
      const present = this.cells[track].some((c) => c.status !== 'skipped');
      if (!present) continue;
      const first = [...this.ready[track].values()][0];
      if (!first) return false;
      codecs[track] = await this.codecOf(first);
    }
    await this.recon.init(codecs);
    return true;
  }

  /** Moves each track on by at most one shard; true when one moved. */
  private async step(): Promise<boolean> {
    let progressed = false;
    for (const track of ['video', 'audio'] as const) {
      const i = this.next[track];
      if (i >= this.map.shards.length) continue;
      const cell = this.cells[track][i]!;
      if (cell.status === 'skipped') {
        const how = await this.conceal(track, i);
        if (how === 'wait') continue;
        cell.concealed = how;
      } else if (cell.status === 'ready') {
        await this.append(track, i, cell);
      } else continue;
      this.next[track]++;
      this.emit('cell', { track, index: i });
      progressed = true;
    }
    return progressed;
  }

  private async append(track: Track, i: number, cell: CellState): Promise<void> {
    const f = this.ready[track].get(i)!;
    await this.recon.append(track, await this.codecOf(f), f.bytes, this.placement(track, i, f.rendition)!);
    if (track === 'video') {
      this.lastVideo = f;
      this.emit('video-appended', { rendition: f.rendition, codecSwitches: this.recon.codecSwitches });
    }
    cell.status = 'appended';
    this.ready[track].delete(i);
    if (this.playedBytes + f.bytes.byteLength <= this.keepForDownloadBytes) {
      this.played.set(`${f.rendition}/${i}`, f.bytes);
      this.playedBytes += f.bytes.byteLength;
    }
  }

  /**
   * Covers the hole of skipped shard `index` so the element never waits at it
   * (DESIGN.md: a hole stalls Chromium forever). 'wait' means a frame to hold
   * may still come, so the track does not move on yet.
   */
  private async conceal(track: Track, index: number): Promise<'hold' | 'silence' | 'seek' | 'wait'> {
    const s = this.map.shards[index]!;
    if (track === 'video') {
      const source = this.lastVideo ?? [...this.ready.video.values()][0];
      if (!source) {
        if (this.cells.video.some((c) => c.status !== 'skipped' && c.status !== 'appended')) return 'wait';
      } else if (this.recon.has('video')) {
        try {
          const hold = await holdFragment(source.bytes, s.duration);
          await this.recon.append('video', hold.codec, hold.bytes, { start: s.start, duration: s.duration });
          return 'hold';
        } catch (e) {
          this.cells.video[index]!.failures.push(`hold: ${(e as Error).message}`);
        }
      }
    } else {
      const r = this.audio;
      const st = r && s.renditions[r.id];
      if (r && st?.start !== undefined && st.samples && r.audio.codec === 'aac' && aacChannelConfigSupported(r.audio.channels) && this.recon.has('audio')) {
        const sr = r.audio.sampleRate;
        const bytes = await silenceFragment(sr, r.audio.channels, st.samples);
        const covered = Math.ceil(st.samples / 1024) * 1024;
        await this.recon.append('audio', this.audioCodec(), bytes, { start: st.start, duration: st.samples / sr, tail: (covered - st.samples) / sr });
        return 'silence';
      }
    }
    const at = this.placement(track, index, undefined);
    if (at) this.recon.skip(track, at);
    return 'seek';
  }

  /** The audio SourceBuffer's codec string: silence must not trigger a changeType. */
  private audioCodec(): string {
    return (this.audio && this.codecs.get(this.audio.id)) ?? 'mp4a.40.2';
  }

  private async codecOf(f: Fetched): Promise<string> {
    let codec = this.codecs.get(f.rendition);
    if (!codec) {
      codec = await codecStringOf(f.bytes);
      this.codecs.set(f.rendition, codec);
    }
    return codec;
  }

  /** Where shard `index` goes on the timeline (s); audio needs its map entry's exact samples, else undefined. */
  private placement(track: Track, index: number, rendition: string | undefined): Placement | undefined {
    const s = this.map.shards[index]!;
    if (track === 'video') return { start: s.start, duration: s.duration };
    const r = this.audio;
    const st = s.renditions[rendition ?? r?.id ?? ''];
    if (!st || !r || st.start === undefined || st.samples === undefined) return undefined;
    const sr = r.audio.sampleRate;
    return { start: st.start, duration: st.samples / sr, lead: (st.lead ?? 0) / sr, tail: (st.tail ?? 0) / sr };
  }
}
