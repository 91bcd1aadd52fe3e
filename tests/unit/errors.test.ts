/** Coded errors (src/shared/errors.ts) and the one table of their HTTP statuses (signaling/errorStatus.ts). */
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isErrorCode, ProtocolError, ShardcastError } from '../../src/shared/errors.ts';
import { ExportError } from '../../src/shared/exportMp4.ts';
import { ShardMapError } from '../../src/shared/shardMap.ts';
import { parseServerMessage } from '../../src/shared/protocol.ts';
import { httpStatus } from '../../signaling/errorStatus.ts';
import { pickEncoding } from '../../signaling/http.ts';
import { ProbeError } from '../../signaling/media/probe.ts';
import { ShardCheckError } from '../../signaling/media/validate.ts';

describe('error codes', () => {
  it('every code has an HTTP error status', () => {
    for (const code of ERROR_CODES) {
      const s = httpStatus(new ShardcastError(code, 'x'));
      expect(s >= 400 && s < 600, `${code} -> ${s}`).toBe(true);
    }
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
  });

  it('keeps the statuses the API has always answered', () => {
    const cases: [ShardcastError, number][] = [
      [new ShardcastError('unauthorized', ''), 401],
      [new ShardcastError('forbidden', ''), 403],
      [new ShardcastError('too-large', ''), 413],
      [new ShardcastError('too-many-uploads', ''), 429],
      [new ProbeError('not-media', ''), 415],
      [new ProbeError('empty', ''), 400],
      [new ProbeError('no-tracks', ''), 422],
      [new ShardCheckError('wrong-frames', ''), 422],
      [new ProtocolError('bad-upload-token', ''), 403],
      [new ProtocolError('not-in-job', ''), 409],
      [new ExportError('busy', '', { retryAfterSeconds: 5 }), 503],
      [new ExportError('export-too-large', ''), 422],
      [new ExportError('nothing-to-export', ''), 409],
      [new ExportError('unknown-rendition', ''), 400],
      // The two codes whose status depends on who throws them:
      [new ShardcastError('not-cached', ''), 404],
      [new ExportError('not-cached', ''), 409],
      [new ShardcastError('bad-ladder', ''), 400],
      [new ShardMapError('bad-ladder', ''), 422],
    ];
    for (const [e, status] of cases) expect(httpStatus(e), `${e.name} ${e.code}`).toBe(status);
  });

  it('subclasses are ShardcastErrors with their own names and keep Retry-After', () => {
    const e = new ExportError('busy', 'wait', { retryAfterSeconds: 5 });
    expect(e).toBeInstanceOf(ShardcastError);
    expect(e.name).toBe('ExportError');
    expect(e.retryAfterSeconds).toBe(5);
    expect(new ProbeError('corrupt', 'x').name).toBe('ProbeError');
    expect(isErrorCode('hash-mismatch')).toBe(true);
    expect(isErrorCode('teapot')).toBe(false);
  });

  it('the protocol error message takes only known codes', () => {
    expect(parseServerMessage(JSON.stringify({ type: 'error', code: 'rate-limited', message: 'slow down' })).ok).toBe(true);
    expect(parseServerMessage(JSON.stringify({ type: 'error', code: 'teapot', message: 'x' })).ok).toBe(false);
  });
});

describe('pickEncoding', () => {
  const pick = (h?: string) => pickEncoding({ headers: h === undefined ? {} : { 'accept-encoding': h } });
  it('prefers brotli, then gzip, honouring q-values and refusals', () => {
    expect(pick()).toBeUndefined();
    expect(pick('')).toBeUndefined();
    expect(pick('gzip, deflate, br')).toBe('br');
    expect(pick('gzip')).toBe('gzip');
    expect(pick('br;q=0.5, gzip')).toBe('gzip');
    expect(pick('br;q=0, gzip;q=0')).toBeUndefined();
    expect(pick('identity')).toBeUndefined();
    expect(pick('*')).toBe('br');
    expect(pick('deflate')).toBeUndefined();
  });
});
