/**
 * Writes the DASH manifest (ISO/IEC 23009-1, static MPD) over the same CMAF
 * segments as the HLS output (./plan.ts, ./segment.ts): one video
 * AdaptationSet with a Representation per video rendition, one audio
 * AdaptationSet, each Representation a SegmentTemplate with a
 * SegmentTimeline whose URLs point into the HLS tree. While a content is
 * still encoding the manifest lists the complete prefix only and is static,
 * so a DASH player sees a shorter presentation; re-read it for more (HLS's
 * EVENT playlist grows in place instead).
 */
import { hlsRelative } from '../api.ts';
import { ShardcastError } from '../errors.ts';
import { isAudioRendition, isVideoRendition, type ShardMap } from '../shardMap.ts';
import { listedSegments, type HlsPlan, type HlsRenditionPlan, type ShardAvailable } from './plan.ts';
import { bandwidth, fallbackCodec } from './playlist.ts';

/** Video timeline ticks per second: 90 kHz, the MPEG clock, exact for common frame rates to within a tick. */
const VIDEO_TIMESCALE = 90_000;

const esc = (s: string) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** xs:duration of `s` seconds. */
const isoDuration = (s: number) => `PT${s.toFixed(3)}S`;

function segmentTemplate(r: HlsRenditionPlan, listed: number, timescale: number, query: string): string {
  const tick = (t: number) => Math.round(t * timescale);
  const rows = r.segments.slice(0, listed).map((s) => `<S t="${tick(s.start)}" d="${tick(s.start + s.duration) - tick(s.start)}"/>`);
  const dir = hlsRelative.dashToRendition(r.id);
  return (
    `<SegmentTemplate timescale="${timescale}" startNumber="0" initialization="${esc(dir + hlsRelative.init(0) + query)}" ` +
    `media="${esc(dir + hlsRelative.segment(0).replace('0', '$Number$') + query)}"><SegmentTimeline>${rows.join('')}</SegmentTimeline></SegmentTemplate>`
  );
}

/**
 * The manifest. `codecs` and `query` as for the master playlist. Throws ShardcastError
 * `unsupported` when a rendition changes init segment mid-stream (one
 * SegmentTemplate names one initialization; use the HLS output then).
 */
export function dashManifest(
  map: ShardMap,
  plan: HlsPlan,
  available: ShardAvailable,
  codecs: Readonly<Record<string, string | undefined>> = {},
  query = '',
): string {
  const changing = plan.renditions.find((r) => r.inits > 1);
  if (changing) {
    throw new ShardcastError(
      'unsupported',
      `rendition ${changing.id} of ${map.contentId} changes codec configuration mid-stream, which this DASH output does not describe; play the HLS master playlist instead`,
    );
  }
  const listed = new Map(plan.renditions.map((r) => [r.id, listedSegments(map, r, available)]));
  const end = (r: HlsRenditionPlan) => {
    const n = listed.get(r.id)!;
    return n === 0 ? 0 : r.segments[n - 1]!.start + r.segments[n - 1]!.duration;
  };
  const duration = Math.min(...plan.renditions.map(end));
  const sets: string[] = [];
  const videos = map.renditions.filter(isVideoRendition);
  if (videos.length > 0) {
    const reps = videos.map((v) => {
      const r = plan.renditions.find((x) => x.id === v.id)!;
      return (
        `<Representation id="${esc(v.id)}" bandwidth="${bandwidth(map, plan, v.id)}" width="${v.video.width}" height="${v.video.height}" ` +
        `codecs="${esc(codecs[v.id] ?? fallbackCodec(v))}">${segmentTemplate(r, listed.get(v.id)!, VIDEO_TIMESCALE, query)}</Representation>`
      );
    });
    sets.push(`<AdaptationSet contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">${reps.join('')}</AdaptationSet>`);
  }
  const audio = map.renditions.find(isAudioRendition);
  if (audio) {
    const r = plan.renditions.find((x) => x.id === audio.id)!;
    sets.push(
      `<AdaptationSet contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">` +
        `<Representation id="${esc(audio.id)}" bandwidth="${bandwidth(map, plan, audio.id)}" codecs="${esc(codecs[audio.id] ?? fallbackCodec(audio))}" ` +
        `audioSamplingRate="${audio.audio.sampleRate}"><AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" ` +
        `value="${audio.audio.channels}"/>${segmentTemplate(r, listed.get(audio.id)!, audio.audio.sampleRate, query)}</Representation></AdaptationSet>`,
    );
  }
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" ` +
    `mediaPresentationDuration="${isoDuration(duration)}" minBufferTime="PT2S">` +
    `<Period id="0" start="PT0S">${sets.join('')}</Period></MPD>\n`
  );
}
