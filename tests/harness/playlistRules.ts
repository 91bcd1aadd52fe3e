/**
 * The HLS playlist validator the tests share: hls-parser (npm) in strict
 * mode, which throws on what RFC 8216 forbids, plus our own checks of the
 * rules a parser lets through: target duration (§4.3.3.1), EXT-X-MAP before
 * the first segment and a discontinuity with every map change (§4.3.2.3,
 * §4.3.2.5), the version those tags need (§7), master attributes (§4.3.4.2),
 * and that a growing EVENT playlist only ever appends (§6.2.1).
 */
import * as HLS from 'hls-parser';

HLS.setOptions({ strictMode: true, silent: true });

export interface MediaFacts {
  targetDuration: number;
  segments: { uri: string; duration: number; map: string | undefined; discontinuity: boolean }[];
  ended: boolean;
  type: string | undefined;
}

const tagValue = (lines: string[], tag: string) => lines.find((l) => l.startsWith(`${tag}:`))?.slice(tag.length + 1);

/** Checks a media playlist; returns what the checks read from it. Throws (with the rule) on a violation. */
export function checkMediaPlaylist(text: string): MediaFacts {
  const parsed = HLS.parse(text);
  if (!(parsed instanceof HLS.types.MediaPlaylist)) throw new Error('not a media playlist');
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines[0] !== '#EXTM3U') throw new Error('§4.3.1.1: the first line must be #EXTM3U');
  const target = Number(tagValue(lines, '#EXT-X-TARGETDURATION'));
  if (!Number.isInteger(target) || target <= 0) throw new Error('§4.3.3.1: EXT-X-TARGETDURATION is a positive decimal-integer');
  const version = Number(tagValue(lines, '#EXT-X-VERSION') ?? 1);
  const segments: MediaFacts['segments'] = [];
  let map: string | undefined;
  let discontinuity = false;
  let mapChanged = false;
  let extinf: number | undefined;
  let ended = false;
  for (const l of lines.slice(1)) {
    if (ended) throw new Error('§4.3.3.4: nothing may follow EXT-X-ENDLIST');
    if (l.startsWith('#EXT-X-MAP:')) {
      const uri = /URI="([^"]+)"/.exec(l)?.[1];
      if (version < 6) throw new Error('§7: EXT-X-MAP outside an I-frames-only playlist needs EXT-X-VERSION 6');
      mapChanged = map !== undefined && uri !== map;
      map = uri;
    } else if (l === '#EXT-X-DISCONTINUITY') discontinuity = true;
    else if (l.startsWith('#EXTINF:')) {
      extinf = Number.parseFloat(l.slice(8));
      if (!(extinf > 0)) throw new Error(`§4.3.2.1: bad EXTINF "${l}"`);
      if (Math.round(extinf) > target) throw new Error(`§4.3.3.1: EXTINF ${extinf} rounds above the target duration ${target}`);
    } else if (l === '#EXT-X-ENDLIST') ended = true;
    else if (!l.startsWith('#')) {
      if (extinf === undefined) throw new Error(`§4.3.2.1: segment ${l} has no EXTINF`);
      if (map === undefined) throw new Error(`§4.3.2.5: fMP4 segment ${l} has no EXT-X-MAP before it`);
      if (mapChanged && !discontinuity) throw new Error(`§4.3.2.3: the init segment changes at ${l} without EXT-X-DISCONTINUITY`);
      segments.push({ uri: l, duration: extinf, map, discontinuity });
      extinf = undefined;
      discontinuity = false;
      mapChanged = false;
    }
  }
  if (parsed.segments.length !== segments.length) throw new Error(`hls-parser read ${parsed.segments.length} segments, the checks ${segments.length}`);
  return { targetDuration: target, segments, ended, type: tagValue(lines, '#EXT-X-PLAYLIST-TYPE') };
}

/** A later reading of the same playlist may only have appended segments (and EXT-X-ENDLIST), never changed one (§6.2.1). */
export function checkGrowth(earlier: string, later: string): void {
  const a = checkMediaPlaylist(earlier);
  const b = checkMediaPlaylist(later);
  if (a.ended && earlier !== later) throw new Error('§6.2.1: a playlist changed after EXT-X-ENDLIST');
  if (a.type !== b.type || a.targetDuration !== b.targetDuration) throw new Error('§6.2.1: the playlist type or target duration changed');
  const before = earlier.replace(/#EXT-X-ENDLIST\n$/, '');
  if (!later.startsWith(before)) throw new Error('§6.2.1: the later playlist does not extend the earlier one');
}

export interface VariantFacts {
  uri: string;
  bandwidth: number;
  codecs: string[];
  resolution: string | undefined;
  audio: string | undefined;
}

/** Checks a master playlist: every variant has BANDWIDTH and CODECS, every AUDIO group it names exists with a URI. */
export function checkMasterPlaylist(text: string): { variants: VariantFacts[]; audioUri: string | undefined } {
  const parsed = HLS.parse(text);
  if (!(parsed instanceof HLS.types.MasterPlaylist)) throw new Error('not a master playlist');
  const lines = text.split('\n').filter((l) => l !== '');
  const media = lines.filter((l) => l.startsWith('#EXT-X-MEDIA:'));
  const variants: VariantFacts[] = [];
  lines.forEach((l, i) => {
    if (!l.startsWith('#EXT-X-STREAM-INF:')) return;
    const bw = Number(/BANDWIDTH=(\d+)/.exec(l)?.[1]);
    const codecs = /CODECS="([^"]+)"/.exec(l)?.[1];
    const audio = /AUDIO="([^"]+)"/.exec(l)?.[1];
    if (!(bw > 0)) throw new Error('§4.3.4.2: every EXT-X-STREAM-INF has a BANDWIDTH');
    if (!codecs) throw new Error('§4.3.4.2: every EXT-X-STREAM-INF should have CODECS');
    if (audio && !media.some((m) => m.includes('TYPE=AUDIO') && m.includes(`GROUP-ID="${audio}"`))) {
      throw new Error(`§4.3.4.2.1: AUDIO="${audio}" names no EXT-X-MEDIA group`);
    }
    const uri = lines[i + 1];
    if (!uri || uri.startsWith('#')) throw new Error('§4.3.4.2: EXT-X-STREAM-INF must be followed by a URI');
    variants.push({ uri, bandwidth: bw, codecs: codecs.split(','), resolution: /RESOLUTION=(\d+x\d+)/.exec(l)?.[1], audio });
  });
  if (variants.length !== parsed.variants.length) throw new Error('hls-parser and the checks disagree on the variants');
  return { variants, audioUri: /URI="([^"]+)"/.exec(media[0] ?? '')?.[1] };
}
