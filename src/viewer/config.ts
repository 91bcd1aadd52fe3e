/**
 * The viewer's config: one zod schema holds every tunable with its default and
 * description (src/shared/configSchema.ts). Any can be overridden by a query
 * parameter of the same name on the watch page (`/watch/ID?lookAheadSeconds=2&cache=0`).
 */
import { z } from 'zod';
import { ConfigSchema } from '../shared/configSchema.ts';

const num = (def: number, description: string) => z.number().default(def).describe(description);

const viewerConfigSchema = z.object({
  lookAheadSeconds: num(6, 'Fetch shards up to this far ahead of the playhead, seconds.'),
  maxConcurrentFetches: num(4, 'Shard fetches in flight at once.'),
  fetchTimeoutMs: num(4000, 'Give up on one source of a shard after this long, ms.'),
  connectTimeoutMs: num(5000, 'Give up connecting to a peer after this long, ms.'),
  maxPeers: num(8, 'Peer connections kept at once (each costs ~13 MiB).'),
  cache: z.boolean().default(true).describe("Use the server's cache as the last source before skipping."),
  locateEveryMs: num(1000, 'Refresh who-holds-what this often while playing, ms.'),
  abrSafety: num(0.7, 'Share of the measured throughput the ABR allows itself.'),
  abrInitialBps: num(5_000_000, 'Throughput assumed before anything is measured, bits/s.'),
  startBufferSeconds: num(0.6, 'Start playing once this much is buffered, seconds.'),
  missingGraceMs: num(1500, 'A shard nobody can provide is retried for this long before it is skipped, ms.'),
  startWaitMs: num(10_000, 'Before playback has started, a missing shard that holds up the start is waited for this long, ms.'),
  keepForDownloadBytes: num(256 * 2 ** 20, 'Verified shards kept after playing, for the download button, bytes; the rest is fetched again.'),
});

export type ViewerConfig = z.output<typeof viewerConfigSchema>;

export const VIEWER_CONFIG = new ConfigSchema(viewerConfigSchema);

export const DEFAULT_VIEWER_CONFIG: ViewerConfig = VIEWER_CONFIG.defaults();

/** `base` with the overrides of a query string; unknown parameters are skipped, malformed values ignored with a console warning. */
export function viewerConfigFrom(search: string, base: ViewerConfig = DEFAULT_VIEWER_CONFIG): ViewerConfig {
  return VIEWER_CONFIG.apply(
    base,
    VIEWER_CONFIG.fromQuery(new URLSearchParams(search), (m) => console.warn(m)),
  );
}
