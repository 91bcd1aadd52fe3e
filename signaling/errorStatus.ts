/**
 * Owns one policy: which HTTP status each error code is answered with. Domain
 * modules throw coded errors (src/shared/errors.ts); only the edge (the
 * request handler, the WebSocket upgrade) turns them into statuses, here.
 *
 * The table is total over ErrorCode, so a new code cannot ship without a
 * status. Codes only the WebSocket sends get the status they would have if
 * an HTTP call ever met them.
 */
import { ExportError } from '../src/shared/exportMp4.ts';
import { ShardMapError } from '../src/shared/shardMap.ts';
import type { ErrorCode, ShardcastError } from '../src/shared/errors.ts';

type Status = number | ((e: ShardcastError) => number);

const STATUS: Record<ErrorCode, Status> = {
  'bad-url': 400,
  'not-found': 404,
  'method-not-allowed': 405,
  'not-built': 503,
  internal: 500,
  'too-large': 413,
  'body-timeout': 408,

  unauthorized: 401,
  forbidden: 403,
  'bad-origin': 403,
  'too-many-connections': 429,
  'too-many-uploads': 429,
  'rate-limited': 429,
  busy: 503,

  'unknown-content': 404,
  empty: 400,
  'upload-aborted': 400,
  'not-media': 415,
  'unsupported-codec': 415,
  'no-tracks': 422,
  corrupt: 422,
  'bad-shard-duration': 400,
  // A ladder that is not valid JSON/schema is a bad request; a valid one the source cannot fill (no audio track...) is unprocessable.
  'bad-ladder': (e) => (e instanceof ShardMapError ? 422 : 400),
  'no-media': 422,
  'invalid-map': 422,

  'bad-range': 400,
  'bad-tracks': 400,
  'no-track': 400,
  unsupported: 400,
  'slice-too-large': 422,

  'bad-index': 400,
  'bad-rendition': 400,
  'unknown-shard': 404,
  'unknown-rendition': 400,
  // One shard not in the cache is absent (404); an export finding nothing cached yet conflicts with the content's state (409).
  'not-cached': (e) => (e instanceof ExportError ? 409 : 404),
  // A content-addressed shard URL whose variant was replaced: that resource is gone for good.
  'variant-replaced': 404,
  'not-accepted': 409,
  'hash-mismatch': 409,
  'upload-token-required': 401,
  'bad-upload-token': 403,
  'bad-lead': 400,
  'bad-tail': 400,

  'not-mp4': 422,
  'wrong-track': 422,
  'wrong-codec': 422,
  'wrong-size': 422,
  'not-keyframe-first': 422,
  'wrong-duration': 422,
  'wrong-frames': 422,
  'unexpected-box': 422,
  'shard-too-large': 422,

  'export-too-large': 422,
  'nothing-to-export': 409,
  'unknown-segment': 404,
  // A shard that was accepted but cannot be copied into a segment: the server's fault, not the request's.
  'segment-unusable': 500,

  'bad-json': 400,
  'bad-message': 400,
  'hello-first': 409,
  'already-joined': 409,
  'missing-capabilities': 400,
  'unknown-peer': 404,
  'not-an-encoder': 403,
  'unknown-job': 409,
  'not-in-job': 409,
  'not-assigned': 409,
  'not-asked': 409,
};

/** The HTTP status a coded error is answered with. */
export function httpStatus(e: ShardcastError): number {
  const s = STATUS[e.code];
  return typeof s === 'function' ? s(e) : s;
}
