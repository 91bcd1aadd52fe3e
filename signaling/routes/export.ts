/**
 * GET /api/contents/:id/export.mp4: one ordinary MP4 rebuilt from the shards
 * in the server's cache (src/shared/exportMp4.ts does the muxing; a browser
 * can run the same code on shards from peers).
 *
 * The file is built in memory (the moov box goes first, so it plays while it
 * downloads), which is why the size is capped and concurrent builds are
 * bounded. Requests for the same export while one is being built share it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { API_PATHS, EXPORT_HEADERS } from '../../src/shared/api.ts';
import { assembleMp4, ExportError, pickVideoRendition, type ExportResult } from '../../src/shared/exportMp4.ts';
import { isAudioRendition, isVideoRendition, readiness, type ShardMap } from '../../src/shared/shardMap.ts';
import type { ContentStore } from '../ContentStore.ts';
import type { EdgeContext } from '../context.ts';
import type { Router } from '../http.ts';
import type { ShardCache } from '../ShardCache.ts';
import { contentOr404 } from './contents.ts';

export interface ExportLimits {
  /** Largest total of cached shard bytes an export may be built from. */
  maxBytes: number;
  /** Distinct exports built at the same time. */
  maxConcurrent: number;
}

export const DEFAULT_EXPORT_LIMITS: ExportLimits = { maxBytes: 1024 * 2 ** 20, maxConcurrent: 2 };

/** Sizes of exports built, remembered (by content, rendition and the cached shards they used) so HEAD can give a Content-Length without building. */
const KNOWN_SIZES_MAX = 256;

const MiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** Header-safe file name: content ids are already tame, but this never trusts that. */
const fileName = (id: string) => `${id.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100) || 'export'}.mp4`;

/**
 * What an export of `map` would be built from, checked without building it: the video rendition
 * (`asked`, else the best cached), the number of cached shards used and their bytes.
 * @throws ExportError unknown-rendition, not-cached (none cached yet), export-too-large.
 */
function planExport(
  map: ShardMap,
  cache: ShardCache,
  asked: string | null,
  limits: ExportLimits,
): { rendition: string | undefined; count: number; bytes: number } {
  const id = map.contentId;
  const cached = (rendition: string) => map.shards.filter((s) => s.renditions[rendition] && cache.has({ contentId: id, rendition, index: s.index })).length;

  const videoIds = map.renditions.filter(isVideoRendition).map((r) => r.id);
  if (asked !== null && !videoIds.includes(asked)) {
    throw new ExportError(
      'unknown-rendition',
      `"${asked}" is not a video rendition of ${id}; choose one of: ${videoIds.join(', ') || '(none: leave rendition out)'}`,
    );
  }
  const rendition = asked ?? pickVideoRendition(map, cached);
  const audio = map.renditions.find(isAudioRendition);
  const used = [rendition, audio?.id].filter((r): r is string => r !== undefined);
  const count = used.reduce((n, r) => n + cached(r), 0);
  if (count === 0) {
    const r = readiness(map);
    throw new ExportError(
      'not-cached',
      `content ${id} has no shard${asked ? ` of rendition ${asked}` : ''} in the server cache yet (${r.ready} of ${r.total} shard variants encoded): ` +
        'keep an /encode tab open until the encoders have uploaded their shards, then try again',
    );
  }
  const bytes = map.shards.reduce(
    (n, s) => n + used.reduce((m, r) => m + (cache.has({ contentId: id, rendition: r, index: s.index }) ? (s.renditions[r]?.size ?? 0) : 0), 0),
    0,
  );
  if (bytes > limits.maxBytes) {
    throw new ExportError(
      'export-too-large',
      `an export is built in memory; ${id}'s cached shards come to ${MiB(bytes)}, above the ${MiB(limits.maxBytes)} limit`,
    );
  }
  return { rendition, count, bytes };
}

export function exportHandler(store: ContentStore, cache: ShardCache, limits: ExportLimits = DEFAULT_EXPORT_LIMITS, log: (...a: unknown[]) => void = () => {}) {
  const building = new Map<string, Promise<ExportResult>>();
  const knownSizes = new Map<string, number>();
  const remember = (key: string, size: number) => {
    knownSizes.delete(key);
    knownSizes.set(key, size);
    if (knownSizes.size > KNOWN_SIZES_MAX) knownSizes.delete(knownSizes.keys().next().value!);
  };

  return async (req: IncomingMessage, res: ServerResponse, p: Record<string, string>, url: URL): Promise<void> => {
    const c = contentOr404({ store }, p.id!);
    // A private copy: the pool updates the live map while the export is read.
    const map = structuredClone(c.map);
    const id = map.contentId;
    const { rendition, count, bytes } = planExport(map, cache, url.searchParams.get('rendition'), limits);

    const fileHeaders = {
      'Content-Type': 'video/mp4',
      'Content-Disposition': `attachment; filename="${fileName(id)}"`,
      'Cache-Control': 'no-store',
    };
    // The cached bytes are in the key: a variant replaced after a cross-check changes the file.
    const key = `${id}/${rendition ?? '-'}/${count}/${bytes}`;
    if (req.method === 'HEAD') {
      // That it can be exported (and which rendition), never building it: the size only if the same export was built before.
      const size = knownSizes.get(key);
      res.writeHead(200, {
        ...fileHeaders,
        ...(size !== undefined && { 'Content-Length': size }),
        [EXPORT_HEADERS.rendition]: rendition ?? '',
        'Access-Control-Expose-Headers': EXPORT_HEADERS.rendition,
      });
      res.end();
      return;
    }

    let job = building.get(key);
    if (!job) {
      if (building.size >= limits.maxConcurrent) {
        throw new ExportError('busy', `${building.size} exports are being built; try again in a few seconds`, { retryAfterSeconds: 5 });
      }
      const t0 = performance.now();
      job = assembleMp4(map, (r, index) => cache.read({ contentId: id, rendition: r, index }), rendition !== undefined ? { videoRendition: rendition } : {});
      building.set(key, job);
      job
        .then(
          (r) => {
            remember(key, r.bytes.byteLength);
            log(
              `exported ${id} (${r.report.rendition ?? 'audio only'}): ${MiB(r.bytes.byteLength)} in ${(performance.now() - t0).toFixed(0)} ms, ${r.report.held} held, ${r.report.silent} silent`,
            );
          },
          () => {},
        )
        .finally(() => building.delete(key));
    }
    // An ExportError (nothing-to-export, unknown-rendition) goes to the edge as it is.
    const result: ExportResult = await job;
    const { report } = result;
    res.writeHead(200, {
      ...fileHeaders,
      'Content-Length': result.bytes.byteLength,
      [EXPORT_HEADERS.rendition]: report.rendition ?? '',
      [EXPORT_HEADERS.videoShards]: String(report.videoShards),
      [EXPORT_HEADERS.held]: String(report.held),
      [EXPORT_HEADERS.audioShards]: String(report.audioShards),
      [EXPORT_HEADERS.silent]: String(report.silent),
      'Access-Control-Expose-Headers': Object.values(EXPORT_HEADERS).join(', '),
    });
    res.end(result.bytes);
  };
}

export function exportRoutes(router: Router, ctx: EdgeContext): void {
  const limits = { maxBytes: ctx.config.exportMaxBytes, maxConcurrent: ctx.config.exportMaxConcurrent };
  router.add('GET', API_PATHS.export, exportHandler(ctx.store, ctx.cache, limits, ctx.log));
}
