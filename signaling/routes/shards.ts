/**
 * Shard bytes over HTTP: encoders PUT them (with a job's upload token: the
 * intake's check before acceptance; without: a copy of an accepted variant
 * for the cache) and viewers GET cached copies, the last resort.
 *
 * A cross-check can replace a variant's bytes, so a cached copy is addressed
 * by its hash (`?sha256=`, immutable) or revalidated by ETag (the plain URL).
 *
 * An upload is admitted from its head alone, before a byte of its body is
 * read: the token names a running job holding that shard (or, without one,
 * the shard has an accepted variant of the declared size not yet cached), the
 * declared size is within bounds and the client has a free upload slot. Its
 * body is then read within the size and time bounds (config.ts).
 */
import type { IncomingMessage } from 'node:http';
import { API_PATHS, type ShardPutResponse } from '../../src/shared/api.ts';
import { ShardcastError } from '../../src/shared/errors.ts';
import { renditionIdSchema, shardKeyString, type ShardKey } from '../../src/shared/shardMap.ts';
import { clientAddress } from '../auth.ts';
import type { EdgeContext } from '../context.ts';
import { readBody, refuseDeclaredOver, sendJson, type Router } from '../http.ts';

/** The shard key in a route's params; throws bad-index or bad-rendition. */
export function shardKeyFrom(p: Record<string, string>): ShardKey {
  const index = Number(p.index);
  if (!/^\d+$/.test(p.index ?? '') || !Number.isSafeInteger(index)) throw new ShardcastError('bad-index', 'the shard index is a whole number');
  if (!renditionIdSchema.safeParse(p.rendition).success) throw new ShardcastError('bad-rendition', `bad rendition id "${p.rendition}"`);
  return { contentId: p.id!, rendition: p.rendition!, index };
}

/** Whether an upload goes through the intake's check (a job's upload) rather than being a cache copy. */
const isIntake = (ctx: EdgeContext, req: IncomingMessage) => req.headers.authorization !== undefined || ctx.config.testHooks.verifyShardBytes;

/**
 * The most body bytes an upload of `key` may have, from its head: its target (the token's job, or
 * for a cache copy the accepted variant, whose size bounds it) and its declared size.
 * @throws ShardcastError too-large, upload-token-required, bad-upload-token, not-in-job, unknown-shard, not-accepted.
 */
function uploadLimit(ctx: EdgeContext, req: IncomingMessage, key: ShardKey): number {
  const { config, intake, cache } = ctx;
  refuseDeclaredOver(req, config.maxShardBytes);
  if (isIntake(ctx, req)) {
    intake.target(req.headers.authorization, key);
    return config.maxShardBytes;
  }
  // A copy for the cache must be the accepted bytes: no more than their size is ever read.
  const size = cache.accepted(key).st.size;
  const max = size === undefined ? config.maxShardBytes : Math.min(config.maxShardBytes, size);
  refuseDeclaredOver(req, max);
  return max;
}

/** The admit check of an upload (see http.ts Admit): its target and size, then a free slot for its client (too-many-uploads). */
function admitUpload(ctx: EdgeContext, req: IncomingMessage, p: Record<string, string>): void {
  const { config, shardUploads, refusals } = ctx;
  uploadLimit(ctx, req, shardKeyFrom(p));
  const full = shardUploads.refusal(clientAddress(req, config.trustProxy));
  if (full) {
    refusals.tooManyUploads++;
    throw new ShardcastError(full.code, full.message, { retryAfterSeconds: 1 });
  }
}

export function shardRoutes(router: Router, ctx: EdgeContext): void {
  const { cache, intake, config, shardUploads } = ctx;
  router
    .add(
      'PUT',
      API_PATHS.shard,
      async (req, res, p, url) => {
        // The edge ran admitUpload on this head just before.
        const key = shardKeyFrom(p);
        const max = uploadLimit(ctx, req, key);
        const release = shardUploads.tryAcquire(clientAddress(req, config.trustProxy));
        if (!release) throw new ShardcastError('too-many-uploads', 'no upload slot is free; retry when one of yours finishes', { retryAfterSeconds: 1 });
        let bytes: Uint8Array;
        try {
          bytes = await readBody(req, max, config.shardUploadTimeoutMs);
        } finally {
          release();
        }
        if (isIntake(ctx, req)) {
          const r = await intake.receive(req.headers.authorization, key, bytes, url.searchParams);
          return sendJson(res, 200, { checked: shardKeyString(key), sha256: r.sha256, size: r.size } satisfies ShardPutResponse);
        }
        await cache.put(key, bytes);
        sendJson(res, 201, { cached: shardKeyString(key) } satisfies ShardPutResponse);
      },
      (req, p) => admitUpload(ctx, req, p),
    )
    .add('GET', API_PATHS.shard, async (req, res, p, url) => {
      const key = shardKeyFrom(p);
      const accepted = ctx.store.get(key.contentId)?.map.shards[key.index]?.renditions[key.rendition]?.sha256;
      const asked = url.searchParams.get('sha256');
      // A cross-check can replace a variant's bytes: only a URL naming the hash may be cached for good.
      if (asked !== null && asked !== accepted) {
        throw new ShardcastError(
          'variant-replaced',
          `shard ${shardKeyString(key)} ${accepted ? `is now the variant ${accepted}` : 'has no accepted variant'}, not ${asked}: read the current hash from the shard map or a locate answer`,
        );
      }
      const bytes = await cache.read(key);
      if (!bytes || !accepted) throw new ShardcastError('not-cached', `shard ${shardKeyString(key)} is not in the cache`);
      const etag = `"${accepted}"`;
      // Private content must not sit in shared caches; the plain URL is revalidated on every use.
      const scope = config.viewerToken ? 'private' : 'public';
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', asked !== null ? `${scope}, max-age=31536000, immutable` : `${scope}, no-cache`);
      if (ifNoneMatch(req.headers['if-none-match'], etag)) {
        res.writeHead(304).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'video/mp4', 'Content-Length': bytes.byteLength });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    });
}

/**
 * Whether an If-None-Match header names `etag` (a list, weak forms and `*`;
 * RFC 9110 section 13.1.2, weak comparison). Not the `fresh` package: it
 * answers "not fresh" whenever the request says Cache-Control: no-cache,
 * which Node's fetch adds to every conditional request, while an origin
 * server must still answer 304.
 */
function ifNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}
