/**
 * Source slices for encoders (GET /api/contents/:id/source?start&end&tracks):
 * a stream-copy remux of a time range (media/slice.ts). With a join token,
 * only pool members get them: each costs the server a remux. Each is built in
 * memory (the moov box first, as encoders' demuxers want), so builds are
 * bounded in number (--max-concurrent-slices) and size (--max-slice-bytes);
 * HEAD answers from the request alone.
 */
import { API_PATHS, SLICE_HEADERS, type SliceTracks } from '../../src/shared/api.ts';
import { ShardcastError } from '../../src/shared/errors.ts';
import { requireJoin } from '../auth.ts';
import type { EdgeContext } from '../context.ts';
import type { Router } from '../http.ts';
import { checkSliceRange, writeSourceSlice, type Slice } from '../media/slice.ts';
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
  const { config, slices, refusals } = ctx;
  router.add('GET', API_PATHS.source, async (req, res, p, url) => {
    requireJoin(req, url, config.joinToken, ctx.admin.token);
    const c = contentOr404(ctx, p.id!);
    const query = sliceQuery(url);
    checkSliceRange(query);
    if (req.method === 'HEAD') {
      // Whether the slice can be asked for, without the remux: its extent is known only once built.
      res.writeHead(200, { 'Content-Type': 'video/mp4', 'Cache-Control': 'no-store' });
      res.end();
      return;
    }
    const release = slices.tryAcquire();
    if (!release) {
      refusals.busySlices++;
      throw new ShardcastError(
        'busy',
        `${config.maxConcurrentSlices} source slices are being built (server option --max-concurrent-slices); try again shortly`,
        {
          retryAfterSeconds: 1,
        },
      );
    }
    let slice: Slice;
    try {
      // A SliceError (bad-range, no-track, unsupported, slice-too-large) goes to the edge as it is.
      slice = await writeSourceSlice(ctx.store.sourcePath(c), { ...query, timeOrigin: c.meta.facts.timeOrigin, maxBytes: config.maxSliceBytes });
    } finally {
      release();
    }
    res.writeHead(200, {
      'Content-Type': 'video/mp4',
      'Content-Length': slice.bytes.byteLength,
      [SLICE_HEADERS.start]: String(slice.sliceStart),
      [SLICE_HEADERS.end]: String(slice.sliceEnd),
      'Access-Control-Expose-Headers': `${SLICE_HEADERS.start}, ${SLICE_HEADERS.end}`,
      'Cache-Control': 'no-store',
    });
    res.end(slice.bytes);
  });
}
