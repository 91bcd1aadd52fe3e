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
  // Where source row y's first sample lands, and the step from one sample of the row to the next (in samples):
  // clockwise 90 sends the left column to the top row, read bottom-up; 270 the right column, read top-down.
  const at = (y: number) => (rotation === 90 ? h - 1 - y : rotation === 270 ? (w - 1) * outW + y : (h - 1 - y) * outW + w - 1);
  const step = rotation === 90 ? outW : rotation === 270 ? -outW : -1;
  for (let y = 0; y < h; y++) {
    let from = y * stride;
    let to = at(y) * b;
    if (b === 1) {
      for (let x = 0; x < w; x++, to += step) dst[to] = src[from++]!;
    } else {
      for (let x = 0; x < w; x++, to += step * b) for (let k = 0; k < b; k++) dst[to + k] = src[from++]!;
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
