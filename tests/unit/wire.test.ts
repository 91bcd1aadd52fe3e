import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Assembly, CHUNK_PAYLOAD, chunksOf, decodeWire, encodeCommand, MAX_CHUNK_BYTES, sha256Hex, WireError } from '../../src/shared/wire.ts';

const key = { contentId: 'c1', rendition: '360p', index: 4 };

describe('peer wire protocol', () => {
  it('round-trips every command', () => {
    const cmds = [
      { t: 'request', id: 1, key },
      { t: 'header', id: 1, size: 10, sha256: 'f'.repeat(64) },
      { t: 'done', id: 1 },
      { t: 'absent', id: 2, reason: 'evicted' },
      { t: 'cancel', id: 3 },
    ] as const;
    for (const c of cmds) expect(decodeWire(encodeCommand(c))).toEqual(c);
  });

  it('splits into chunks of at most 64 KiB and reassembles the exact bytes', async () => {
    const bytes = new Uint8Array(200_000).map((_, i) => (i * 7) % 251);
    const frames = [...chunksOf(0xdeadbeef, bytes)];
    expect(frames.every((f) => f.byteLength <= MAX_CHUNK_BYTES)).toBe(true);
    expect(frames).toHaveLength(Math.ceil(bytes.byteLength / CHUNK_PAYLOAD));
    const hash = await sha256Hex(bytes);
    expect(hash).toBe(createHash('sha256').update(bytes).digest('hex'));
    const a = new Assembly(bytes.byteLength, hash);
    for (const f of frames) {
      const m = decodeWire(f.slice().buffer);
      expect(m.t === 'chunk' && m.id).toBe(0xdeadbeef);
      if (m.t === 'chunk') a.add(m.data);
    }
    expect(a.complete).toBe(true);
    expect(a.bytes()).toEqual(bytes);
  });

  it('refuses more bytes than announced, and oversized announcements', () => {
    const a = new Assembly(10, 'a'.repeat(64));
    expect(() => a.add(new Uint8Array(11))).toThrow(WireError);
    expect(() => new Assembly(2 ** 30, 'a'.repeat(64))).toThrow(/exceeds/);
    expect(() => a.bytes()).toThrow(/incomplete/);
  });

  it.each([
    ['not JSON', '{'],
    ['an unknown command', JSON.stringify({ t: 'shutdown', id: 1 })],
    ['a negative id', JSON.stringify({ t: 'done', id: -1 })],
    ['a bad hash', JSON.stringify({ t: 'header', id: 1, size: 1, sha256: 'zz' })],
    ['a short chunk', new Uint8Array(2)],
    ['a huge chunk', new Uint8Array(MAX_CHUNK_BYTES + 1)],
  ])('rejects %s', (_n, m) => {
    expect(() => decodeWire(m)).toThrow(WireError);
  });
});
