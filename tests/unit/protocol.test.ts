import { describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES, parseClientMessage, parseServerMessage } from '../../src/shared/protocol.ts';

const hash = 'a'.repeat(64);
const key = { contentId: 'abc', rendition: '360p', index: 3 };
const enc = (v: unknown) => JSON.stringify(v);

describe('client messages', () => {
  it.each([
    { type: 'hello', protocol: 1, role: 'viewer' },
    { type: 'hello', protocol: 1, role: 'encoder', capabilities: { engines: [{ name: 'ffmpeg-wasm', codecs: ['h264', 'aac'], speed: 3.1 }] } },
    {
      type: 'hello',
      protocol: 1,
      role: 'encoder',
      peerId: 'p1',
      capabilities: { engines: [{ name: 'x', codecs: [] }] },
      holdings: [{ key, sha256: hash, size: 10 }],
    },
    { type: 'heartbeat' },
    { type: 'job-progress', jobId: 'j1', progress: 0.5, fps: 120 },
    { type: 'shard-ready', jobId: 'j1', key, sha256: hash, size: 1234, engine: 'ffmpeg-wasm' },
    { type: 'job-done', jobId: 'j1' },
    { type: 'job-failed', jobId: 'j1', reason: 'oom' },
    { type: 'locate', requestId: 1, contentId: 'abc' },
    { type: 'signal', to: 'p2', data: { type: 'offer', sdp: 'v=0' } },
    { type: 'shard-dropped', key },
    { type: 'report-peer', peerId: 'p2', key, reason: 'hash mismatch' },
  ])('accepts $type', (m) => {
    const r = parseClientMessage(enc(m));
    expect(r.ok, JSON.stringify(r)).toBe(true);
  });

  it('fills defaults', () => {
    const r = parseClientMessage(enc({ type: 'locate', requestId: 7, contentId: 'abc' }));
    expect(r.ok && r.msg.type === 'locate' && [r.msg.from, r.msg.count]).toEqual([0, 100]);
  });

  it.each([
    ['not JSON', '{nope', 'bad-json'],
    ['a non-object', '42', 'bad-message'],
    ['an unknown type', enc({ type: 'launch-missiles' }), 'bad-message'],
    ['a missing field', enc({ type: 'job-done' }), 'bad-message'],
    ['an extra field', enc({ type: 'heartbeat', sneaky: 1 }), 'bad-message'],
    ['a bad hash', enc({ type: 'shard-ready', key, sha256: 'XYZ', size: 1 }), 'bad-message'],
    ['a negative index', enc({ type: 'shard-dropped', key: { ...key, index: -1 } }), 'bad-message'],
    ['an id with slashes', enc({ type: 'locate', requestId: 1, contentId: '../etc' }), 'bad-message'],
    ['a wrong protocol version', enc({ type: 'hello', protocol: 2, role: 'viewer' }), 'bad-message'],
    ['a progress above 1', enc({ type: 'job-progress', jobId: 'j', progress: 1.5 }), 'bad-message'],
    ['prototype pollution', '{"type":"heartbeat","__proto__":{"x":1}}', 'bad-message'],
  ])('rejects %s', (_n, raw, code) => {
    const r = parseClientMessage(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.code).toBe(code);
      expect(r.message.length).toBeGreaterThan(3);
    }
  });

  it('names the offending field and echoes the type', () => {
    const r = parseClientMessage(enc({ type: 'shard-ready', key, sha256: hash, size: -5 }));
    expect(r).toMatchObject({ ok: false, ref: 'shard-ready' });
    expect(!r.ok && r.message).toMatch(/^size:/);
  });

  it('refuses oversized messages before parsing', () => {
    const r = parseClientMessage('x'.repeat(MAX_MESSAGE_BYTES + 1));
    expect(r).toMatchObject({ ok: false, code: 'too-large' });
  });

  it('accepts binary frames holding JSON', () => {
    expect(parseClientMessage(new TextEncoder().encode(enc({ type: 'heartbeat' }))).ok).toBe(true);
  });
});

describe('server messages', () => {
  it('validates what the browser receives', () => {
    expect(parseServerMessage(enc({ type: 'welcome', protocol: 1, peerId: 'p', resume: 'r', heartbeatMs: 2000, iceServers: [] })).ok).toBe(true);
    expect(
      parseServerMessage(enc({ type: 'holders', requestId: 1, contentId: 'c', shards: [{ index: 0, rendition: 'audio', peers: ['p'], cached: false }] })).ok,
    ).toBe(true);
    expect(parseServerMessage(enc({ type: 'welcome', protocol: 1 })).ok).toBe(false);
  });
});
