/**
 * Rebuilds the stream in Media Source Extensions: one SourceBuffer for video
 * and one for audio, in 'segments' mode, every shard placed by the map
 * (timestampOffset) whatever timestamps its file carries. Appends happen in
 * map order; a shard that cannot be had leaves a hole that is concealed.
 *
 * Measured in Chromium (DESIGN.md): every shard file carries its init
 * segment, so any rendition can follow any other; a codec change needs
 * changeType, or playback silently ends; a hole left alone stalls forever.
 */
import { BufferSource, Input, MP4 } from 'mediabunny';

export type Track = 'video' | 'audio';

export interface Placement {
  /** Where the shard's own content starts on the map's timeline, seconds. */
  start: number;
  /** Its length, seconds. */
  duration: number;
  /** Audio: seconds of extra material in the file before `start` (priming, pre-roll). */
  lead?: number;
  /** Audio: seconds of extra material after the shard's end. */
  tail?: number;
}

/** The RFC 6381 codec string of a shard file (from its own init segment). */
export async function codecStringOf(bytes: Uint8Array): Promise<string> {
  const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
  try {
    const track = (await input.getTracks())[0];
    const s = track && (await track.getCodecParameterString());
    if (!s) throw new Error('the shard has no recognisable codec');
    return s;
  } finally {
    input.dispose();
  }
}

class BufferQueue {
  private chain: Promise<void> = Promise.resolve();
  mime: string | undefined;
  constructor(
    readonly sb: SourceBuffer,
    mime: string,
  ) {
    this.mime = mime;
  }

  private waitIdle(): Promise<void> {
    if (!this.sb.updating) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        this.sb.removeEventListener('updateend', done);
        this.sb.removeEventListener('error', fail);
        resolve();
      };
      const fail = () => {
        this.sb.removeEventListener('updateend', done);
        this.sb.removeEventListener('error', fail);
        reject(new Error('SourceBuffer error'));
      };
      this.sb.addEventListener('updateend', done);
      this.sb.addEventListener('error', fail);
    });
  }

  /** Runs `fn` once every earlier operation on this buffer has finished. */
  run(fn: () => Promise<void> | void): Promise<void> {
    const next = this.chain.then(async () => {
      await this.waitIdle();
      await fn();
      await this.waitIdle();
    });
    this.chain = next.catch(() => {});
    return next;
  }
}

export class Reconstructor {
  readonly mediaSource = new MediaSource();
  private readonly queues = new Map<Track, BufferQueue>();
  private readonly opened: Promise<void>;
  /** Holes left by skipped shards, per track: [start, end) seconds. */
  readonly holes: { track: Track; start: number; end: number }[] = [];
  /** changeType calls so far (codec switches). */
  codecSwitches = 0;

  constructor(
    readonly video: HTMLVideoElement,
    private readonly duration: number,
  ) {
    this.opened = new Promise((resolve) => this.mediaSource.addEventListener('sourceopen', () => resolve(), { once: true }));
    video.src = URL.createObjectURL(this.mediaSource);
    // A hole stalls the element; when it waits at one, jump over it (a few ms, DESIGN.md).
    video.addEventListener('waiting', () => this.skipHoleAt(video.currentTime));
    video.addEventListener('timeupdate', () => this.skipHoleAt(video.currentTime));
  }

  private skipHoleAt(t: number): void {
    for (const h of this.holes) {
      if (t >= h.start - 0.05 && t < h.end - 0.01) {
        this.video.currentTime = h.end + 0.001;
        return;
      }
    }
  }

  async open(): Promise<void> {
    await this.opened;
    if (this.mediaSource.duration !== this.duration) this.mediaSource.duration = this.duration;
  }

  /**
   * Creates the SourceBuffers. All of them must exist before the first append:
   * Chromium fixes the set of tracks at the first init segment and refuses
   * addSourceBuffer after it.
   */
  async init(codecs: Partial<Record<Track, string>>): Promise<void> {
    await this.opened;
    for (const track of ['video', 'audio'] as const) {
      const codec = codecs[track];
      if (!codec || this.queues.has(track)) continue;
      const mime = `${track}/mp4; codecs="${codec}"`;
      if (!MediaSource.isTypeSupported(mime)) throw new Error(`this browser cannot play ${mime}`);
      const sb = this.mediaSource.addSourceBuffer(mime);
      sb.mode = 'segments';
      this.queues.set(track, new BufferQueue(sb, mime));
    }
  }

  has(track: Track): boolean {
    return this.queues.has(track);
  }

  get initialised(): boolean {
    return this.queues.size > 0;
  }

  /** The track's SourceBuffer, switched to `codec` with changeType when it differs. */
  private async queueFor(track: Track, codec: string): Promise<BufferQueue> {
    const q = this.queues.get(track);
    if (!q) throw new Error(`no ${track} SourceBuffer: init() first`);
    const mime = `${track}/mp4; codecs="${codec}"`;
    if (q.mime !== mime) {
      // Without changeType Chromium silently ends playback at a codec switch.
      await q.run(() => {
        q.sb.changeType(mime);
        q.mime = mime;
        this.codecSwitches++;
      });
    }
    return q;
  }

  /** Appends one verified shard at its place on the map's timeline. */
  async append(track: Track, codec: string, bytes: Uint8Array, at: Placement): Promise<void> {
    const q = await this.queueFor(track, codec);
    await q.run(() => {
      const sb = q.sb;
      // Reset the window first: appendWindowStart must stay below appendWindowEnd.
      sb.appendWindowEnd = Infinity;
      sb.appendWindowStart = 0;
      if (track === 'audio' && ((at.lead ?? 0) > 0 || (at.tail ?? 0) > 0)) {
        // Trim priming and the overlap where two separately encoded runs meet.
        sb.appendWindowStart = Math.max(0, at.start);
        sb.appendWindowEnd = at.start + at.duration;
      }
      sb.timestampOffset = at.start - (at.lead ?? 0);
      sb.appendBuffer(bytes as Uint8Array<ArrayBuffer>);
    });
  }

  /** Records a shard that will never come; playback jumps over it. */
  skip(track: Track, at: Placement): void {
    this.holes.push({ track, start: at.start, end: at.start + at.duration });
  }

  /** Buffered range containing t, per track (the end), or t when nothing is buffered there. */
  bufferedAhead(t: number): number {
    let end = Infinity;
    for (const q of this.queues.values()) {
      const b = q.sb.buffered;
      let e = t;
      for (let i = 0; i < b.length; i++) if (b.start(i) <= t + 0.05 && b.end(i) > e) e = b.end(i);
      end = Math.min(end, e);
    }
    return end === Infinity ? t : end;
  }

  async end(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.run(() => {})));
    if (this.mediaSource.readyState === 'open') this.mediaSource.endOfStream();
  }
}
