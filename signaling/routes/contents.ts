/**
 * The contents resource: list, publish (upload), read one with its shard map,
 * delete. Publishing and deleting need the admin token; uploads are bounded
 * by the upload slots.
 */
import type { IncomingMessage } from 'node:http';
import {
  API_PATHS,
  type ContentResponse,
  type ContentsResponse,
  type ContentSummaryView,
  type DeleteResponse,
  type PublishResponse,
} from '../../src/shared/api.ts';
import { ShardcastError } from '../../src/shared/errors.ts';
import { contentStatus, type Content } from '../ContentStore.ts';
import { requireAdmin } from '../auth.ts';
import type { EdgeContext } from '../context.ts';
import { sendJson, type Router } from '../http.ts';
import { ingestUpload } from '../ingest.ts';
import type { PendingSource } from '../Mezzanine.ts';

/** A source waiting for its mezzanine, as GET /api/contents lists it (no map yet: no shards). */
function pendingSummary(p: PendingSource): ContentSummaryView {
  return {
    id: p.id,
    name: p.name,
    status: 'normalizing',
    duration: p.duration ?? 0,
    shards: 0,
    renditions: [],
    ready: 0,
    total: 0,
    createdAt: p.createdAt,
    reason: p.reason,
  };
}

/** The content with this id, or an unknown-content error. */
export function contentOr404(ctx: Pick<EdgeContext, 'store'>, id: string): Content {
  const c = ctx.store.get(id);
  if (!c) throw new ShardcastError('unknown-content', `no content with id ${id}`);
  return c;
}

async function publish(ctx: EdgeContext, req: IncomingMessage, url: URL): Promise<PublishResponse> {
  const { config, store, uploads, refusals } = ctx;
  requireAdmin(req, ctx.admin.token);
  const release = uploads.tryAcquire();
  if (!release) {
    refusals.tooManyUploads++;
    throw new ShardcastError(
      'too-many-uploads',
      `${config.maxConcurrentUploads} uploads are already in progress; try again when one finishes (server option --max-concurrent-uploads)`,
    );
  }
  let r;
  try {
    r = await ingestUpload(
      req,
      store,
      {
        maxBytes: config.maxUploadBytes,
        name: (req.headers['x-filename'] as string | undefined) ?? url.searchParams.get('name') ?? undefined,
        shardDuration: url.searchParams.get('shardDuration') ?? (req.headers['x-shard-duration'] as string | undefined),
        renditions: url.searchParams.get('renditions') ?? undefined,
      },
      ctx.mezzanines,
    );
  } finally {
    release();
  }
  if ('normalizing' in r) {
    const p = r.normalizing;
    ctx.log(`published ${p.id} "${p.name}": normalizing (${p.reason})`);
    return { id: p.id, shards: 0, renditions: [], status: 'normalizing', reason: p.reason };
  }
  const c = r.content;
  ctx.log(`published ${c.meta.id} "${c.meta.name}": ${c.map.shards.length} shards x ${c.map.renditions.length} renditions`);
  ctx.pool.schedule();
  return { id: c.meta.id, shards: c.map.shards.length, renditions: c.map.renditions.map((r) => r.id) };
}

export function contentRoutes(router: Router, ctx: EdgeContext): void {
  const { store, pool, cache } = ctx;
  router
    .add('GET', API_PATHS.contents, (_req, res) =>
      sendJson(res, 200, {
        contents: [...ctx.mezzanines.all().map(pendingSummary), ...store.all().map((c) => store.summary(c))],
      } satisfies ContentsResponse),
    )
    .add(
      'POST',
      API_PATHS.contents,
      async (req, res, _p, url) => {
        const r = await publish(ctx, req, url);
        sendJson(res, r.status === 'normalizing' ? 202 : 201, r);
      },
      // Checked before the body (a CLI sending "Expect: 100-continue" is told before it sends gigabytes).
      (req) => requireAdmin(req, ctx.admin.token),
    )
    .add('GET', API_PATHS.content, (_req, res, p) => {
      const pending = ctx.mezzanines.get(p.id!);
      if (pending) {
        sendJson(res, 200, pendingSummary(pending));
        return;
      }
      const c = contentOr404(ctx, p.id!);
      sendJson(res, 200, {
        id: c.meta.id,
        name: c.meta.name,
        status: contentStatus(c.map),
        createdAt: c.meta.createdAt,
        shardMap: c.map,
      } satisfies ContentResponse);
    })
    .add('DELETE', API_PATHS.content, async (req, res, p) => {
      requireAdmin(req, ctx.admin.token);
      if (await ctx.mezzanines.delete(p.id!)) {
        sendJson(res, 200, { deleted: p.id! } satisfies DeleteResponse);
        return;
      }
      if (!(await store.delete(p.id!))) throw new ShardcastError('unknown-content', `no content with id ${p.id}`);
      pool.forgetContent(p.id!);
      await cache.forgetContent(p.id!);
      sendJson(res, 200, { deleted: p.id! } satisfies DeleteResponse);
    });
}
