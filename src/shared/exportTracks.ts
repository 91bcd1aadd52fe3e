/**
 * The two tracks of an MP4 export, each owning its muxer source and its
 * running state: VideoTrackWriter the frame waiting for its successor's time
 * (so it can be held over a hole) and the H.264 parameter sets the decoder
 * holds; AudioTrackWriter the packet grid and the silence frame. ExportNotes
 * owns the bounded list of notes the report carries.
 */
import { EncodedAudioPacketSource, EncodedPacket, EncodedVideoPacketSource, type Output } from 'mediabunny';
import { aacObjectType, aacSilentFrame } from './aac.ts';
import { descriptionBytes, sameBytes, type AudioShard, type Parsed, type VideoShard } from './exportShards.ts';
import { audioPacketTime, audioTrim, exactFrameRate, heldDuration, parseAvcC, withInbandParameterSets, type AvcParameterSets } from './exportPlan.ts';
import { AAC_PACKET_SAMPLES, type ShardMap, type ShardRenditionState } from './shardMap.ts';

const MAX_NOTES = 20;

/** Notes for a person reading the export report: the first MAX_NOTES, then one saying more were left out. */
export class ExportNotes {
  readonly list: string[] = [];
  add(s: string): void {
    if (this.list.length < MAX_NOTES) this.list.push(s);
    else if (this.list.length === MAX_NOTES) this.list.push('(more notes left out)');
  }
}

/** `got` when it is a parsed shard of `kind`; else undefined, noting why when it is missing or unreadable. */
function usable<K extends 'video' | 'audio'>(
  got: Parsed,
  kind: K,
  label: string,
  notes: ExportNotes,
): Extract<VideoShard | AudioShard, { kind: K }> | undefined {
  if (got === undefined || typeof got === 'string') {
    notes.add(`${label}: ${got ?? 'not available'}`);
    return undefined;
  }
  return got.kind === kind ? (got as Extract<VideoShard | AudioShard, { kind: K }>) : undefined;
}

export class VideoTrackWriter {
  /** Shards copied. */
  shards = 0;
  /** Shards missing or unusable, concealed by holding a frame. */
  held = 0;
  private readonly source: EncodedVideoPacketSource;
  private started = false;
  /** Written once the next packet's time is known, so the frame before a hole can be held across it. */
  private pending: EncodedPacket | undefined;
  private readonly entryDesc: Uint8Array | undefined;
  private readonly firstAvc: AvcParameterSets | undefined;
  /** The H.264 parameter sets the decoder holds after the last shard written. */
  private activeDesc: Uint8Array | undefined;

  /** Adds the track to `output` (before it starts), configured from the first usable shard. */
  constructor(
    output: Output,
    private readonly first: VideoShard,
    private readonly map: ShardMap,
    private readonly notes: ExportNotes,
  ) {
    this.source = new EncodedVideoPacketSource(first.codec);
    const frameRate = exactFrameRate(map.source.video?.fps, map.source.video?.variableFrameRate, map.shards[0]?.start);
    output.addVideoTrack(this.source, frameRate ? { frameRate } : {});
    this.entryDesc = descriptionBytes(first.config.description);
    this.firstAvc = first.codec === 'avc' ? parseAvcC(this.entryDesc ?? new Uint8Array()) : undefined;
    this.activeDesc = this.entryDesc;
  }

  /** Writes shard `index` (read as `got`) at its map time, or counts it held. */
  async write(label: string, index: number, got: Parsed): Promise<void> {
    const choice = this.choose(label, got);
    if (!choice) {
      this.held++;
      return;
    }
    this.shards++;
    const { use, inband } = choice;
    const s = this.map.shards[index]!;
    const t0 = Math.min(...use.packets.map((p) => p.timestamp));
    const withParams = (p: EncodedPacket) => (inband ? withInbandParameterSets(p.data, inband) : p.data);
    if (!this.started && !this.pending && index > 0) {
      // Holes at the very start: show this shard's key frame from the content's start.
      const from = this.map.shards[0]!.start;
      const key = use.packets[0]!;
      await this.add(key.clone({ timestamp: from, duration: s.start - from, data: withParams(key) }));
    }
    for (let j = 0; j < use.packets.length; j++) {
      const p = use.packets[j]!;
      await this.add(p.clone({ timestamp: s.start + (p.timestamp - t0), ...(j === 0 && { data: withParams(p) }) }));
    }
  }

  /** Writes the last frame, held up to `end` (s, the content's end). */
  finish(end: number): Promise<void> {
    return this.flush(end);
  }

  /** The shard to copy and the parameter sets it must carry in-band, or undefined (noted) when it cannot be used. */
  private choose(label: string, read: Parsed): { use: VideoShard; inband?: AvcParameterSets } | undefined {
    const got = usable(read, 'video', label, this.notes);
    if (!got) return undefined;
    const cfg = this.first.config;
    if (got.codec !== this.first.codec || got.config.codedWidth !== cfg.codedWidth || got.config.codedHeight !== cfg.codedHeight) {
      this.notes.add(
        `${label}: ${got.codec} ${got.config.codedWidth}x${got.config.codedHeight} differs from the file's ${this.first.codec} ${cfg.codedWidth}x${cfg.codedHeight}`,
      );
      return undefined;
    }
    if (got.codec !== 'avc') return { use: got };
    // Another encoder or preset may have written other parameter sets,
    // which one sample entry cannot describe. Such a shard carries its
    // own in-band (decoders use the latest SPS/PPS), and so does the
    // first shard after it, to switch the decoder back. VP9 and AV1
    // carry theirs in the bitstream anyway.
    const desc = descriptionBytes(got.config.description);
    let choice: { use: VideoShard; inband?: AvcParameterSets } | undefined;
    if (sameBytes(desc, this.entryDesc) && sameBytes(this.activeDesc, this.entryDesc)) choice = { use: got };
    else {
      const own = parseAvcC(desc ?? new Uint8Array());
      if (own && this.firstAvc && own.lengthSize === this.firstAvc.lengthSize) choice = { use: got, inband: own };
      else this.notes.add(`${label}: its H.264 configuration cannot be carried in-band`);
    }
    if (choice) this.activeDesc = desc;
    return choice;
  }

  private async add(p: EncodedPacket): Promise<void> {
    await this.flush(p.timestamp);
    this.pending = p;
  }

  private async flush(nextTimestamp: number): Promise<void> {
    if (!this.pending) return;
    const p = this.pending;
    const d = heldDuration(p.timestamp, p.duration, nextTimestamp);
    await this.source.add(d > p.duration + 1e-9 ? p.clone({ duration: d }) : p, this.started ? undefined : { decoderConfig: this.first.config });
    this.started = true;
    this.pending = undefined;
  }
}

export class AudioTrackWriter {
  /** Shards copied. */
  shards = 0;
  /** Shards missing or unusable, replaced by silence (or, where silence cannot be written, a gap). */
  silent = 0;
  private readonly source: EncodedAudioPacketSource;
  private started = false;
  private readonly sampleRate: number;
  private readonly packetSamples: number;
  /** One AAC-LC frame of silence, when the track's format allows writing one. */
  private readonly silence: Uint8Array | undefined;

  /** Adds the track to `output` (before it starts), configured from the first usable shard. */
  constructor(
    output: Output,
    private readonly first: AudioShard,
    private readonly notes: ExportNotes,
  ) {
    this.source = new EncodedAudioPacketSource(first.codec);
    output.addAudioTrack(this.source);
    const c = first.config;
    this.sampleRate = c.sampleRate;
    this.packetSamples = Math.round(first.packets[0]!.duration * this.sampleRate) || AAC_PACKET_SAMPLES;
    if (first.codec === 'aac' && aacObjectType(descriptionBytes(c.description)) === 2 && (c.numberOfChannels === 1 || c.numberOfChannels === 2)) {
      this.silence = aacSilentFrame(c.numberOfChannels);
    }
  }

  /** Writes an audio shard (read as `got`, placed by its map entry `st`) at its exact sample start, or silence in its place. */
  async write(label: string, st: ShardRenditionState, got: Parsed): Promise<void> {
    const want = st.samples! / this.packetSamples;
    const at = (j: number) => audioPacketTime(st.start!, j, this.packetSamples, this.sampleRate);
    const dur = this.packetSamples / this.sampleRate;
    const use = this.choose(label, st, want, got);
    if (use) {
      this.shards++;
      if (use.preroll) await this.add(use.preroll.clone({ timestamp: at(-1), duration: dur }));
      for (let j = 0; j < use.kept.length; j++) await this.add(use.kept[j]!.clone({ timestamp: at(j), duration: dur }));
      return;
    }
    this.silent++;
    if (this.silence && Number.isInteger(want)) {
      for (let j = 0; j < want; j++) await this.add(new EncodedPacket(this.silence, 'key', at(j), dur));
    } else this.notes.add(`${label}: left as a gap (silence can only be written for AAC-LC mono or stereo)`);
  }

  /** The packets of `got` to copy (lead and tail dropped), with a pre-roll packet for the file's first audio; undefined (noted) when unusable. */
  private choose(label: string, st: ShardRenditionState, want: number, read: Parsed): { kept: EncodedPacket[]; preroll?: EncodedPacket } | undefined {
    const got = usable(read, 'audio', label, this.notes);
    if (!got) return undefined;
    const cfg = this.first.config;
    let trim: { front: number; back: number } | undefined;
    try {
      trim = audioTrim(st.lead ?? 0, st.tail ?? 0, this.packetSamples);
    } catch (e) {
      this.notes.add(`${label}: ${(e as Error).message}`);
    }
    if (
      got.codec !== this.first.codec ||
      got.config.sampleRate !== cfg.sampleRate ||
      got.config.numberOfChannels !== cfg.numberOfChannels ||
      !sameBytes(descriptionBytes(got.config.description), descriptionBytes(cfg.description))
    ) {
      this.notes.add(`${label}: ${got.codec} ${got.config.sampleRate} Hz x ${got.config.numberOfChannels} differs from the file's audio format`);
    } else if (!Number.isInteger(want)) {
      this.notes.add(`${label}: ${st.samples} samples is not a whole number of ${this.packetSamples}-sample packets`);
    } else if (trim && got.packets.length !== trim.front + want + trim.back) {
      this.notes.add(`${label}: ${got.packets.length} packets, the map expects ${trim.front + want + trim.back}`);
    } else if (trim) {
      const kept = got.packets.slice(trim.front, trim.front + want);
      // The file's first audio keeps one packet of pre-roll (the encoder's
      // priming, or real audio before a later run's start), so the decoder
      // is warmed up at the first kept sample. It lies before the start and
      // the muxer's edit list hides it.
      const preroll = !this.started && trim.front > 0 ? got.packets[trim.front - 1] : undefined;
      return preroll ? { kept, preroll } : { kept };
    }
    return undefined;
  }

  private async add(p: EncodedPacket): Promise<void> {
    await this.source.add(p, this.started ? undefined : { decoderConfig: this.first.config });
    this.started = true;
  }
}
