/**
 * Owns the error vocabulary: every machine-readable code the server answers,
 * over HTTP (`{"error":{"code","message"}}`) or the pool WebSocket (`error`
 * messages), and the one error base class that carries such a code.
 *
 * Domain modules throw a `ShardcastError` (or a subclass that narrows the
 * code); they never decide an HTTP status. The server's edge maps codes to
 * statuses in one table (signaling/errorStatus.ts). Codes are stable: clients
 * and tests match on them, so renaming one is an API change.
 */

export const ERROR_CODES = [
  // requests and routing
  'bad-url',
  'not-found',
  'method-not-allowed',
  'not-built',
  'internal',
  'too-large',
  'body-timeout',
  // access and limits
  'unauthorized',
  'forbidden',
  'bad-origin',
  'too-many-connections',
  'too-many-uploads',
  'rate-limited',
  'busy',
  // contents and uploads (ingest, probe, shard map)
  'unknown-content',
  'empty',
  'upload-aborted',
  'not-media',
  'unsupported-codec',
  'no-tracks',
  'corrupt',
  'bad-shard-duration',
  'bad-ladder',
  'no-media',
  'invalid-map',
  // source slices
  'bad-range',
  'bad-tracks',
  'no-track',
  'unsupported',
  'slice-too-large',
  // shards: addressing, cache, intake
  'bad-index',
  'bad-rendition',
  'unknown-shard',
  'unknown-rendition',
  'not-cached',
  'variant-replaced',
  'not-accepted',
  'hash-mismatch',
  'upload-token-required',
  'bad-upload-token',
  'bad-lead',
  'bad-tail',
  // shard structure checks (signaling/media/validate.ts)
  'not-mp4',
  'wrong-track',
  'wrong-codec',
  'wrong-size',
  'not-keyframe-first',
  'wrong-duration',
  'wrong-frames',
  'unexpected-box',
  'shard-too-large',
  // export
  'export-too-large',
  'nothing-to-export',
  // HLS/DASH segments (src/shared/hls)
  'unknown-segment',
  'segment-unusable',
  // pool protocol
  'bad-json',
  'bad-message',
  'hello-first',
  'already-joined',
  'missing-capabilities',
  'unknown-peer',
  'not-an-encoder',
  'unknown-job',
  'not-in-job',
  'not-assigned',
  'not-asked',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const KNOWN = new Set<string>(ERROR_CODES);

export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === 'string' && KNOWN.has(v);
}

export interface ShardcastErrorOptions {
  /** Seconds after which a retry may succeed (sent as Retry-After over HTTP). */
  retryAfterSeconds?: number;
  cause?: unknown;
}

/**
 * An expected failure with a stable `code` and a message that says what to do
 * about it. `C` narrows the codes a subclass may use (e.g. ProbeError).
 */
export class ShardcastError<C extends ErrorCode = ErrorCode> extends Error {
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly code: C,
    message: string,
    options: ShardcastErrorOptions = {},
  ) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ShardcastError';
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** A pool protocol message that cannot be honoured; answered with an `error` message (or an HTTP error for uploads). */
export class ProtocolError extends ShardcastError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}
