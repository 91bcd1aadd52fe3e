import { describe, expect, it } from 'vitest';
import { rotatePlane } from '../../src/encoder/frameRotation.ts';

// A 3x2 plane, rows padded to a stride of 4 (the pad byte 99 must never be read):
//   1 2 3
//   4 5 6
const src = Uint8Array.from([1, 2, 3, 99, 4, 5, 6, 99]);
const turned = (rotation: 90 | 180 | 270, bytes = 1, plane = src, stride = 4) => {
  const dst = new Uint8Array(6 * bytes);
  rotatePlane(plane, stride, 3, 2, rotation, dst, bytes);
  return [...dst];
};

describe('rotatePlane (the WebCodecs path turns frames as ffmpeg transpose/hflip,vflip do)', () => {
  it('90 clockwise (transpose=clock): the left column, read bottom-up, becomes the top row', () => {
    expect(turned(90)).toEqual([4, 1, 5, 2, 6, 3]);
  });

  it('270 clockwise (transpose=cclock): the right column, read top-down, becomes the top row', () => {
    expect(turned(270)).toEqual([3, 6, 2, 5, 1, 4]);
  });

  it('180 (hflip,vflip): the picture upside down and mirrored', () => {
    expect(turned(180)).toEqual([6, 5, 4, 3, 2, 1]);
  });

  it('moves 2-byte samples (NV12 chroma pairs) whole', () => {
    // Each sample is the pair (v, v + 10).
    const pairs = Uint8Array.from([1, 11, 2, 12, 3, 13, 4, 14, 5, 15, 6, 16]);
    expect(turned(90, 2, pairs, 6)).toEqual([4, 14, 1, 11, 5, 15, 2, 12, 6, 16, 3, 13]);
  });

  it('refuses a destination too small', () => {
    expect(() => rotatePlane(src, 4, 3, 2, 90, new Uint8Array(5))).toThrow(RangeError);
  });
});
