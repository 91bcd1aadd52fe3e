/**
 * Source slices for encoders (GET /api/contents/:id/source?start&end&tracks):
 * a stream-copy remux of a time range (media/slice.ts). With a join token,
 * only pool members get them: each costs the server a remux.
 */
import { API_PATHS, SLICE_HEADERS, type SliceTracks } from '../../src/shared/api.ts';
import { ShardcastError } from '../../src/shared/errors.ts';
import { requireJoin } from '../auth.ts';
import type { EdgeContext } from '../context.ts';
import type { Router } from '../http.ts';
import { writeSourceSlice } from '../media/slice.ts';
import { contentOr404 } from './contents.ts';

function sliceQuery(url: URL): { start: number; end: number; tracks: SliceTracks } {
  const start = Number(url.searchParams.get('start'));
  const end = Number(url.searchParams.get('end'));
  const tracks = url.searchParams.get('tracks') ?? 'both';
  if (!Number.isFinite(start) || !Number.isFinite(end)) throw new ShardcastError('bad-range', 'start and end are required, in seconds: ?start=3.0&end=6.0');
  if (tracks !== 'video' && tracks !== 'audio' && tracks !== 'both') throw new ShardcastError('bad-tracks', 'tracks is video, audio or both');
  return { start, end, tracks };
}

export function sourceRoutes(router: Router, ctx: EdgeContext): void {
  router.add('GET', API_PATHS.source, async (req, res, p, url) => {
    requireJoin(req, url, ctx.config.joinToken, ctx.admin.token);
    const c = contentOr404(ctx, p.id!);
    // A SliceError (bad-range, no-track, unsupported) goes to the edge as it is.
    const slice = await writeSourceSlice(ctx.store.sourcePath(c), { ...sliceQuery(url), timeOrigin: c.meta.facts.timeOrigin });
    res.writeHead(200, {
      'Content-Type': 'video/mp4',
      'Content-Length': slice.bytes.byteLength,
      [SLICE_HEADERS.start]: String(slice.sliceStart),
      [SLICE_HEADERS.end]: String(slice.sliceEnd),
      'Access-Control-Expose-Headers': `${SLICE_HEADERS.start}, ${SLICE_HEADERS.end}`,
      'Cache-Control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : slice.bytes);
  });
}
