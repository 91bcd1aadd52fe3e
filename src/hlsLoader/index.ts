/**
 * The hls.js loader plug-in's public API, and the entry of its browser build
 * (served by shardcast at /lib/shardcast-hlsjs.js):
 *
 *   const p2p = new ShardcastHls({ server: 'https://video.example.org' });
 *   const hls = new Hls({ ...p2p.hlsConfig() });
 *   hls.loadSource(p2p.masterUrl(contentId));
 *
 * README ("hls.js plug-in") has the whole example page.
 */
export type { SegmentSource } from './FragmentLoader.ts';
export { fragmentLoaderFor } from './FragmentLoader.ts';
export { ShardcastHls, type SegmentReport, type ShardcastHlsEvents, type ShardcastHlsOptions, type ShardcastHlsStats } from './ShardcastHls.ts';
