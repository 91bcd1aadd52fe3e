/**
 * Writes the HLS playlists (RFC 8216) of a content from its plan
 * (./plan.ts): the master playlist (one variant stream per video rendition,
 * the audio rendition as an EXT-X-MEDIA alternate group) and one media
 * playlist per rendition. Text only; which segments are listed is the
 * caller's decision (listedSegments). URIs are relative, from src/shared/api.ts.
 */
import { hlsRelative } from '../api.ts';
import { isAudioRendition, isVideoRendition, type Rendition, type ShardMap } from '../shardMap.ts';
import type { HlsPlan, HlsRenditionPlan } from './plan.ts';

/**
 * EXT-X-VERSION: 6 is the lowest that allows EXT-X-MAP in a media playlist
 * that is not I-frames only (RFC 8216 §7); decimal EXTINF needs 3.
 */
export const HLS_VERSION = 6;

/** The GROUP-ID of the audio alternate group. */
export const AUDIO_GROUP = 'audio';

/**
 * RFC 6381 codec strings for when no shard is there to read one from: H.264
 * High at level 4.0, VP9 profile 0 level 4.1 8-bit, AV1 main level 4.0, AAC-LC.
 * The server names the real ones from a cached shard's sample entry.
 */
export function fallbackCodec(r: Rendition): string {
  if (isVideoRendition(r)) return { h264: 'avc1.640028', vp9: 'vp09.00.41.08', av1: 'av01.0.08M.08' }[r.video.codec];
  return r.audio.codec === 'aac' ? 'mp4a.40.2' : 'opus';
}

/** EXT-X-TARGETDURATION: no EXTINF of the plan may round above it (RFC 8216 §4.3.3.1), now or once the playlist has grown. */
export function targetDuration(r: HlsRenditionPlan): number {
  return Math.max(1, ...r.segments.map((s) => Math.round(s.duration)));
}

export interface MediaPlaylistOptions {
  /** How many leading segments to list. */
  listed: number;
  /** True once every segment is listed for good: the playlist gets EXT-X-ENDLIST. */
  ended: boolean;
  /** Appended to every URI (e.g. `?token=…`), so a private content's player keeps its access on relative URIs. */
  query?: string;
}

/**
 * The media playlist of one rendition. It is an EVENT playlist from the
 * first request on (segments are only ever appended) and gets EXT-X-ENDLIST
 * when the content is complete; the type tag itself never changes (§6.2.1).
 * A change of init segment is marked with EXT-X-DISCONTINUITY and a new
 * EXT-X-MAP (§4.3.2.3: a change of encoding parameters).
 */
export function mediaPlaylist(r: HlsRenditionPlan, opts: MediaPlaylistOptions): string {
  const q = opts.query ?? '';
  const lines = [
    '#EXTM3U',
    `#EXT-X-VERSION:${HLS_VERSION}`,
    `#EXT-X-TARGETDURATION:${targetDuration(r)}`,
    '#EXT-X-MEDIA-SEQUENCE:0',
    '#EXT-X-PLAYLIST-TYPE:EVENT',
    '#EXT-X-INDEPENDENT-SEGMENTS',
  ];
  let init = -1;
  for (const s of r.segments.slice(0, opts.listed)) {
    if (s.init !== init) {
      if (init >= 0) lines.push('#EXT-X-DISCONTINUITY');
      lines.push(`#EXT-X-MAP:URI="${hlsRelative.init(s.init)}${q}"`);
      init = s.init;
    }
    lines.push(`#EXTINF:${s.duration.toFixed(6)},`, hlsRelative.segment(s.seq) + q);
  }
  if (opts.ended) lines.push('#EXT-X-ENDLIST');
  return `${lines.join('\n')}\n`;
}

/** Bits per second of a rendition at its busiest segment, from the accepted shard sizes; undefined until one segment's sizes are all known. */
function peakBitrate(map: ShardMap, r: HlsRenditionPlan): number | undefined {
  let peak: number | undefined;
  for (const s of r.segments) {
    const sizes = s.shards.map((i) => map.shards[i]?.renditions[r.id]?.size);
    if (sizes.some((x) => x === undefined) || s.duration <= 0) continue;
    const bits = (8 * sizes.reduce((n: number, x) => n + x!, 0)) / s.duration;
    peak = Math.max(peak ?? 0, bits);
  }
  return peak;
}

/** BANDWIDTH: the peak segment bit rate (§4.3.4.2) measured where known, never below the ladder's nominal rate. */
export function bandwidth(map: ShardMap, plan: HlsPlan, id: string): number {
  const r = plan.renditions.find((x) => x.id === id)!;
  const rendition = map.renditions.find((x) => x.id === id)!;
  const nominal = isVideoRendition(rendition) ? rendition.video.bitrate : isAudioRendition(rendition) ? rendition.audio.bitrate : 0;
  return Math.ceil(Math.max(nominal, peakBitrate(map, r) ?? 0));
}

const attr = (s: string) => `"${s.replace(/["\r\n]/g, '')}"`;

/**
 * The master playlist. `codecs` gives each rendition's RFC 6381 string where
 * it is known (read from a shard); the others get fallbackCodec's. An
 * audio-only content has one variant stream, the audio playlist itself.
 * `query` is appended to every URI, as in mediaPlaylist.
 */
export function masterPlaylist(map: ShardMap, plan: HlsPlan, codecs: Readonly<Record<string, string | undefined>> = {}, query = ''): string {
  const uri = (id: string) => hlsRelative.playlist(id) + query;
  const codecOf = (r: Rendition) => codecs[r.id] ?? fallbackCodec(r);
  const lines = ['#EXTM3U', `#EXT-X-VERSION:${HLS_VERSION}`, '#EXT-X-INDEPENDENT-SEGMENTS'];
  const audio = map.renditions.find(isAudioRendition);
  const videos = map.renditions.filter(isVideoRendition);
  const fps = map.source.video?.fps;
  if (audio && videos.length > 0) {
    lines.push(
      `#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=${attr(AUDIO_GROUP)},NAME=${attr(audio.id)},DEFAULT=YES,AUTOSELECT=YES,` +
        `CHANNELS=${attr(String(audio.audio.channels))},URI=${attr(uri(audio.id))}`,
    );
  }
  for (const v of videos) {
    const codecList = [codecOf(v), ...(audio ? [codecOf(audio)] : [])].join(',');
    const bw = bandwidth(map, plan, v.id) + (audio ? bandwidth(map, plan, audio.id) : 0);
    const parts = [`BANDWIDTH=${bw}`, `CODECS=${attr(codecList)}`, `RESOLUTION=${v.video.width}x${v.video.height}`];
    if (fps) parts.push(`FRAME-RATE=${fps.toFixed(3)}`);
    if (audio) parts.push(`AUDIO=${attr(AUDIO_GROUP)}`);
    lines.push(`#EXT-X-STREAM-INF:${parts.join(',')}`, uri(v.id));
  }
  if (audio && videos.length === 0) {
    lines.push(`#EXT-X-STREAM-INF:BANDWIDTH=${bandwidth(map, plan, audio.id)},CODECS=${attr(codecOf(audio))}`, uri(audio.id));
  }
  return `${lines.join('\n')}\n`;
}
