/**
 * Zeroes the creation and modification times in an MP4's movie, track and
 * media headers (mvhd, tkhd, mdhd), in place. mediabunny's muxer stamps the
 * wall clock there, so two encodes of the same job would differ by a few
 * bytes, and the pool's cross-checks compare hashes: a shard's bytes must be a
 * function of its job alone. ffmpeg's own mp4 muxer already writes zeros.
 */
const CONTAINERS = new Set(['moov', 'trak', 'mdia']);
const TIMED = new Set(['mvhd', 'tkhd', 'mdhd']);

export function zeroMp4Times(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const walk = (start: number, end: number): void => {
    let at = start;
    while (at + 8 <= end) {
      let size = view.getUint32(at);
      const type = String.fromCharCode(bytes[at + 4]!, bytes[at + 5]!, bytes[at + 6]!, bytes[at + 7]!);
      let header = 8;
      if (size === 1) {
        if (at + 16 > end) return;
        size = Number(view.getBigUint64(at + 8));
        header = 16;
      } else if (size === 0) size = end - at;
      if (size < header || at + size > end) return; // malformed: leave the rest alone
      if (CONTAINERS.has(type)) walk(at + header, at + size);
      else if (TIMED.has(type)) {
        const body = at + header;
        const version = bytes[body];
        const width = version === 1 ? 8 : 4;
        if (body + 4 + 2 * width <= at + size) bytes.fill(0, body + 4, body + 4 + 2 * width);
      }
      at += size;
    }
  };
  walk(0, bytes.byteLength);
  return bytes;
}
