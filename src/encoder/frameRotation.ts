/**
 * Turns decoded frames by a display rotation for the WebCodecs path, in YUV.
 *
 * A phone writes its picture sideways and a display matrix saying how to turn
 * it; the VideoEncoder has no rotation of its own, and drawing on a rotated
 * canvas goes through RGB with another colour matrix than the source's
 * (WebCodecsEngine.ts: 26 dB for an otherwise exact copy). So the planes are
 * moved here, pixel for pixel, exactly as ffmpeg's transpose/hflip,vflip do on
 * the ffmpeg.wasm path (ffmpegArgs.ts rotationFilter), and the two engines
 * start from the same picture.
 */

/** Clockwise rotation in degrees (the job's `rotation`). */
export type Rotation = 90 | 180 | 270;

/**
 * Writes plane `src` (`w` x `h` samples of `bytesPerSample` bytes, rows
 * `stride` bytes apart) turned `rotation` degrees clockwise into `dst`, tightly
 * packed: `h` x `w` samples for 90/270, `w` x `h` for 180. NV12's interleaved
 * chroma is a plane of 2-byte samples.
 */
export function rotatePlane(src: Uint8Array, stride: number, w: number, h: number, rotation: Rotation, dst: Uint8Array, bytesPerSample = 1): void {
  const b = bytesPerSample;
  const outW = rotation === 180 ? w : h;
  if (dst.length < outW * (rotation === 180 ? h : w) * b) throw new RangeError('rotatePlane: destination too small');
  for (let y = 0; y < h; y++) {
    const row = y * stride;
    for (let x = 0; x < w; x++) {
      // Where source (x, y) lands: clockwise 90 sends the left column to the top row, read bottom-up.
      let ox: number;
      let oy: number;
      if (rotation === 90) {
        ox = h - 1 - y;
        oy = x;
      } else if (rotation === 270) {
        ox = y;
        oy = w - 1 - x;
      } else {
        ox = w - 1 - x;
        oy = h - 1 - y;
      }
      const from = row + x * b;
      const to = (oy * outW + ox) * b;
      for (let k = 0; k < b; k++) dst[to + k] = src[from + k]!;
    }
  }
}

/** Planes of the formats a software decoder hands out: [width divisor, height divisor, bytes per sample]. */
const PLANES: Partial<Record<VideoPixelFormat, [number, number, number][]>> = {
  I420: [
    [1, 1, 1],
    [2, 2, 1],
    [2, 2, 1],
  ],
  NV12: [
    [1, 1, 1],
    [2, 2, 2],
  ],
  I444: [
    [1, 1, 1],
    [1, 1, 1],
    [1, 1, 1],
  ],
};

/**
 * A new frame holding `frame`'s visible picture turned `rotation` degrees
 * clockwise, with its timestamp, duration and colour space. The caller still
 * owns (and closes) `frame`. Throws when the frame's pixel format is not one
 * of I420, NV12 or I444 (8 bit): the job then falls back to ffmpeg.wasm.
 */
export async function rotateFrame(frame: VideoFrame, rotation: Rotation): Promise<VideoFrame> {
  const format = frame.format;
  const planes = format ? PLANES[format] : undefined;
  if (!format || !planes) throw new Error(`cannot rotate a ${String(format)} frame (only 8-bit I420, NV12 and I444)`);
  const w = frame.visibleRect?.width ?? frame.codedWidth;
  const h = frame.visibleRect?.height ?? frame.codedHeight;
  const src = new Uint8Array(frame.allocationSize());
  const layout = await frame.copyTo(src);
  const [ow, oh] = rotation === 180 ? [w, h] : [h, w];
  const sizes = planes.map(([dx, dy, b]) => Math.ceil(w / dx) * Math.ceil(h / dy) * b);
  const out = new Uint8Array(sizes.reduce((a, n) => a + n, 0));
  const outLayout: PlaneLayout[] = [];
  let at = 0;
  planes.forEach(([dx, dy, b], i) => {
    const pw = Math.ceil(w / dx);
    const ph = Math.ceil(h / dy);
    const { offset, stride } = layout[i]!;
    rotatePlane(src.subarray(offset), stride, pw, ph, rotation, out.subarray(at, at + sizes[i]!), b);
    outLayout.push({ offset: at, stride: (rotation === 180 ? pw : ph) * b });
    at += sizes[i]!;
  });
  return new VideoFrame(out, {
    format,
    codedWidth: ow,
    codedHeight: oh,
    timestamp: frame.timestamp,
    ...(frame.duration !== null && { duration: frame.duration }),
    layout: outLayout,
    colorSpace: frame.colorSpace.toJSON(),
  });
}
