/**
 * One Node process: the web app, the HTTP API, storage and the signalling
 * WebSocket (/ws), all on one port.
 *
 * This is the composition root: it builds the store, cache, pool and intake,
 * wires their events, registers one route module per resource
 * (signaling/routes/), hands requests to the edge (edge.ts) and upgrades to
 * the pool socket (ws.ts). No request handling lives here.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { ServerConfig } from './config.ts';
import { ContentStore } from './ContentStore.ts';
import { newRefusals, type EdgeContext, type Log, type Refusals } from './context.ts';
import { continueHandler, requestHandler } from './edge.ts';
import { Router } from './http.ts';
import { ShardCache } from './ShardCache.ts';
import { ShardIntake } from './ShardIntake.ts';
import { PoolManager } from './PoolManager.ts';
import { loadAdminToken, splitList, type AdminToken } from './auth.ts';
import { ClientSlots, Slots } from './limits.ts';
import { contentRoutes } from './routes/contents.ts';
import { exportRoutes } from './routes/export.ts';
import { hlsRoutes } from './routes/hls.ts';
import { poolRoutes } from './routes/pool.ts';
import { shardRoutes } from './routes/shards.ts';
import { sourceRoutes } from './routes/source.ts';
import { mezzanineRoutes } from './routes/mezzanine.ts';
import { Mezzanines } from './Mezzanine.ts';
import { attachPoolSocket } from './ws.ts';

export interface RunningServer {
  url: string;
  port: number;
  store: ContentStore;
  pool: PoolManager;
  config: ServerConfig;
  /** The admin token in force and where it came from. */
  admin: AdminToken;
  /** Requests refused by a limit or an access check, by kind (for tests and /metrics). */
  refusals: Refusals;
  /** Open WebSocket connections and distinct client addresses among them. */
  connections(): { open: number; addresses: number };
  close(): Promise<void>;
}

/** Builds the pool's parts over `config.dataDir` and wires the pool's events to the log and the cache. */
async function buildCore(config: ServerConfig, log: Log): Promise<Pick<EdgeContext, 'store' | 'cache' | 'pool' | 'intake' | 'mezzanines'>> {
  const store = new ContentStore(config.dataDir, config.snapshotDelayMs);
  const opened = await store.open();
  for (const s of opened.skipped) log(`skipped unreadable content ${s}`);
  const cache = new ShardCache(config.dataDir, store);
  const checked = await cache.open();
  if (checked.dropped.length > 0) {
    log(
      `cache: ${checked.dropped.length} files did not match the accepted hash and were dropped (${checked.dropped.slice(0, 5).join(', ')}${checked.dropped.length > 5 ? ', ...' : ''})`,
    );
  }
  const pool = new PoolManager(store, config, Date.now, (k) => cache.has(k));
  pool.on('peer-joined', (e) => log(`${e.role} ${e.peerId} joined`));
  pool.on('peer-lost', (e) => log(`${e.role} ${e.peerId} lost (${e.reason}); ${e.requeued} shards re-queued`));
  pool.on('content-complete', (e) => log(`content ${e.contentId} fully encoded`));
  // Accepted bytes the intake checked go to the cache; a revoked variant's copy leaves it at once.
  pool.on('shard-accepted', (e) => {
    if (e.bytes && config.cacheEnabled) void cache.putAccepted(e.key, e.bytes).catch((err: unknown) => log(`cache write failed: ${String(err)}`));
  });
  pool.on('shard-revoked', (e) => cache.forget(e.key));
  pool.on('encoder-convicted', (e) => log(`encoder ${e.peerId} failed a cross-check: ${e.wrong} wrong, ${e.revoked} unverified shards revoked`));
  const intake = new ShardIntake(store, pool, config.cacheEnabled);
  const mezzanines = new Mezzanines(
    store,
    { maxSourceBytes: config.mezzanineMaxSourceBytes, maxBytes: config.mezzanineMaxBytes, deadlineMs: config.mezzanineDeadlineMs },
    (id) => log(`content ${id} published from its mezzanine`),
  );
  await mezzanines.open();
  return { store, cache, pool, intake, mezzanines };
}

function logStartup(log: Log, config: ServerConfig, admin: AdminToken, shownHost: string, port: number): void {
  log(
    admin.source === 'generated'
      ? `admin token generated into ${admin.file} (mode 0600): publish with "npx shardcast publish FILE --token $(cat ${admin.file})" or the token field on /publish`
      : admin.source === 'file'
        ? `admin token: ${admin.file} (publish with --token, SHARDCAST_TOKEN, or the token field on /publish)`
        : 'admin token: from the --admin-token option / SHARDCAST_ADMIN_TOKEN',
  );
  if (config.joinToken) log('join token required: tabs open /encode?token=... and /watch/ID?token=...');
  if (config.viewerToken) log('contents are private: every content read needs the viewer token (/watch/ID?token=..., or Authorization: Bearer)');
  log(`shardcast listening on http://${shownHost}:${port} (data in ${path.relative(process.cwd(), config.dataDir) || '.'})`);
}

/** Starts shardcast on `config.port` (0: any free port); resolves once it listens. Throws when the port cannot be bound. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const log: Log = (...a) => {
    if (config.log) console.log(new Date().toISOString(), ...a);
  };
  const admin = loadAdminToken(config);
  const refusals = newRefusals();
  const core = await buildCore(config, log);
  const ctx: EdgeContext = {
    ...core,
    config,
    admin,
    uploads: new Slots(config.maxConcurrentUploads),
    shardUploads: new ClientSlots(config.maxShardUploadsPerIp, config.maxConcurrentShardUploads, {
      perAddress: '--max-shard-uploads-per-ip',
      overall: '--max-concurrent-shard-uploads',
    }),
    slices: new Slots(config.maxConcurrentSlices),
    refusals,
    log,
  };
  const router = new Router();
  for (const routes of [contentRoutes, sourceRoutes, shardRoutes, exportRoutes, hlsRoutes, poolRoutes]) routes(router, ctx);
  mezzanineRoutes(router, ctx, ctx.mezzanines);

  const tokens = { adminToken: admin.token, joinToken: config.joinToken, viewerToken: config.viewerToken };
  const edge = { router, corsOrigins: splitList(config.corsOrigins), distDir: config.distDir, tokens };
  const server = http.createServer(requestHandler(edge));
  server.on('checkContinue', continueHandler(server, edge));
  const socket = attachPoolSocket(server, { config, pool: core.pool, refusals, allowedOrigins: splitList(config.allowedOrigins), tokens });

  core.pool.start();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
  logStartup(log, config, admin, shownHost, port);

  let closed = false;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    store: core.store,
    pool: core.pool,
    config,
    admin,
    refusals,
    connections: socket.connections,
    async close() {
      if (closed) return;
      closed = true;
      core.pool.stop();
      socket.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await core.store.close();
    },
  };
}
