/**
 * One Node process: the web app, the HTTP API, storage and the signalling
 * WebSocket (/ws), all on one port.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { parseClientMessage, MAX_MESSAGE_BYTES, type ServerMessage } from '../src/shared/protocol.ts';
import type { ServerConfig } from './config.ts';
import { ContentStore, contentStatus } from './ContentStore.ts';
import { baseHeaders, HttpError, readBody, Router, sendError, sendJson, serveStatic } from './http.ts';
import { ShardCache } from './ShardCache.ts';
import { ShardIntake } from './ShardIntake.ts';
import { exportHandler } from './export.ts';
import { renditionIdSchema } from '../src/shared/shardMap.ts';
import { ingestUpload } from './ingest.ts';
import { PoolManager, ProtocolError } from './PoolManager.ts';
import { SliceError, writeSourceSlice } from './media/slice.ts';
import { renderMetrics } from './metrics.ts';
import { applyCors, clientAddress, loadAdminToken, originAllowed, requireAdmin, requireJoin, splitList, tokenMatches, type AdminToken } from './auth.ts';
import { ConnectionCounter, Slots, TokenBucket } from './limits.ts';

export interface RunningServer {
  url: string;
  port: number;
  store: ContentStore;
  pool: PoolManager;
  config: ServerConfig;
  /** The admin token in force and where it came from. */
  admin: AdminToken;
  /** Requests refused by a limit or an access check, by kind (for tests and /metrics). */
  refusals: Record<'rateLimited' | 'badOrigin' | 'tooManyConnections' | 'tooManyUploads' | 'badJoinToken', number>;
  /** Open WebSocket connections and distinct client addresses among them. */
  connections(): { open: number; addresses: number };
  close(): Promise<void>;
}

/** Client-side routes of the single-page app; each is answered with index.html. */
const PAGE_ROUTES = [/^\/$/, /^\/publish\/?$/, /^\/encode\/?$/, /^\/pool\/?$/, /^\/watch\/[^/]+\/?$/];

/** Largest shard an encoder may upload to the cache. */
const MAX_SHARD_UPLOAD = 16 * 2 ** 20;

function shardKeyFrom(p: Record<string, string>) {
  const index = Number(p.index);
  if (!/^\d+$/.test(p.index ?? '') || !Number.isSafeInteger(index)) throw new HttpError(400, 'bad-index', 'the shard index is a whole number');
  if (!renditionIdSchema.safeParse(p.rendition).success) throw new HttpError(400, 'bad-rendition', `bad rendition id "${p.rendition}"`);
  return { contentId: p.id!, rendition: p.rendition!, index };
}

/** A connection that keeps sending garbage is closed after this many invalid messages in a row. */
const MAX_CONSECUTIVE_BAD = 20;
const HELLO_TIMEOUT_MS = 10_000;

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const log = (...a: unknown[]) => {
    if (config.log) console.log(new Date().toISOString(), ...a);
  };
  const admin = loadAdminToken(config);
  const allowedOrigins = splitList(config.allowedOrigins);
  const corsOrigins = splitList(config.corsOrigins);
  const uploads = new Slots(config.maxConcurrentUploads);
  const connections = new ConnectionCounter(config.maxConnectionsPerIp, config.maxConnections);
  const refusals = { rateLimited: 0, badOrigin: 0, tooManyConnections: 0, tooManyUploads: 0, badJoinToken: 0 };
  const store = new ContentStore(config.dataDir, config.snapshotDelayMs);
  const opened = await store.open();
  for (const s of opened.skipped) log(`skipped unreadable content ${s}`);
  const cache = new ShardCache(config.dataDir, store);
  await cache.open();
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

  const router = new Router()
    .add('GET', '/api/health', (_req, res) => sendJson(res, 200, { ok: true, contents: store.all().length, peers: pool.peers.size }))
    .add('GET', '/api/contents', (_req, res) => sendJson(res, 200, { contents: store.all().map((c) => store.summary(c)) }))
    .add('POST', '/api/contents', async (req, res, _p, url) => {
      requireAdmin(req, admin.token);
      const release = uploads.tryAcquire();
      if (!release) refusals.tooManyUploads++;
      if (!release) throw new HttpError(429, 'too-many-uploads', `${config.maxConcurrentUploads} uploads are already in progress; try again when one finishes (server option --max-concurrent-uploads)`);
      let c;
      try {
        c = await ingestUpload(req, store, {
          maxBytes: config.maxUploadBytes,
          name: (req.headers['x-filename'] as string | undefined) ?? url.searchParams.get('name') ?? undefined,
          shardDuration: url.searchParams.get('shardDuration') ?? (req.headers['x-shard-duration'] as string | undefined),
          renditions: url.searchParams.get('renditions') ?? undefined,
        });
      } finally {
        release();
      }
      log(`published ${c.meta.id} "${c.meta.name}": ${c.map.shards.length} shards x ${c.map.renditions.length} renditions`);
      pool.schedule();
      sendJson(res, 201, { id: c.meta.id, shards: c.map.shards.length, renditions: c.map.renditions.map((r) => r.id) });
    })
    .add('GET', '/api/contents/:id', (_req, res, p) => {
      const c = store.get(p.id!);
      if (!c) throw new HttpError(404, 'unknown-content', `no content with id ${p.id}`);
      sendJson(res, 200, { id: c.meta.id, name: c.meta.name, status: contentStatus(c.map), createdAt: c.meta.createdAt, shardMap: c.map });
    })
    .add('DELETE', '/api/contents/:id', async (req, res, p) => {
      requireAdmin(req, admin.token);
      if (!(await store.delete(p.id!))) throw new HttpError(404, 'unknown-content', `no content with id ${p.id}`);
      pool.forgetContent(p.id!);
      await cache.forgetContent(p.id!);
      sendJson(res, 200, { deleted: p.id });
    })
    .add('GET', '/api/contents/:id/source', async (req, res, p, url) => {
      // Slices cost the server a remux each: with a join token, only pool members get them.
      requireJoin(req, url, config.joinToken, admin.token);
      const c = store.get(p.id!);
      if (!c) throw new HttpError(404, 'unknown-content', `no content with id ${p.id}`);
      const start = Number(url.searchParams.get('start'));
      const end = Number(url.searchParams.get('end'));
      const tracks = url.searchParams.get('tracks') ?? 'both';
      if (!Number.isFinite(start) || !Number.isFinite(end)) throw new HttpError(400, 'bad-range', 'start and end are required, in seconds: ?start=3.0&end=6.0');
      if (tracks !== 'video' && tracks !== 'audio' && tracks !== 'both') throw new HttpError(400, 'bad-tracks', 'tracks is video, audio or both');
      let slice;
      try {
        slice = await writeSourceSlice(store.sourcePath(c), { start, end, tracks, timeOrigin: c.meta.facts.timeOrigin });
      } catch (e) {
        if (e instanceof SliceError) throw new HttpError(400, e.code, e.message);
        throw e;
      }
      res.writeHead(200, {
        'Content-Type': 'video/mp4',
        'Content-Length': slice.bytes.byteLength,
        'X-Slice-Start': String(slice.sliceStart),
        'X-Slice-End': String(slice.sliceEnd),
        'Access-Control-Expose-Headers': 'X-Slice-Start, X-Slice-End',
        'Cache-Control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : slice.bytes);
    })
    .add('PUT', '/api/contents/:id/shards/:rendition/:index', async (req, res, p, url) => {
      const key = shardKeyFrom(p);
      const bytes = await readBody(req, MAX_SHARD_UPLOAD);
      // With a job's upload token: the check before acceptance. Without: a copy of an accepted variant for the cache.
      if (req.headers.authorization !== undefined || config.testHooks.verifyShardBytes) {
        const r = await intake.receive(req.headers.authorization, key, bytes, url.searchParams);
        return sendJson(res, 200, { checked: `${key.contentId}/${key.rendition}/${key.index}`, sha256: r.sha256, size: r.size });
      }
      await cache.put(key, bytes);
      sendJson(res, 201, { cached: `${key.contentId}/${key.rendition}/${key.index}` });
    })
    .add('GET', '/api/contents/:id/shards/:rendition/:index', async (req, res, p) => {
      const key = shardKeyFrom(p);
      const bytes = await cache.read(key);
      if (!bytes) throw new HttpError(404, 'not-cached', `shard ${key.contentId}/${key.rendition}/${key.index} is not in the cache`);
      res.writeHead(200, { 'Content-Type': 'video/mp4', 'Content-Length': bytes.byteLength, 'Cache-Control': 'public, max-age=31536000, immutable' });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    })
    .add('GET', '/api/contents/:id/export.mp4', exportHandler(store, cache, { maxBytes: config.exportMaxBytes, maxConcurrent: config.exportMaxConcurrent }, log))
    .add('GET', '/api/pool', (_req, res) => sendJson(res, 200, pool.snapshot()))
    .add('GET', '/metrics', (_req, res) => {
      const text = renderMetrics(pool, store);
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(text);
    });

  const server = http.createServer((req, res) => {
    void handleRequest(req, res).catch((e: unknown) => {
      console.error('request failed:', e);
      sendError(res, 500, 'internal', 'internal error; the server log has details');
    });
  });

  // A client that sends "Expect: 100-continue" (our CLI) is told before it sends its body
  // when it lacks the admin token; answering mid-body would cut the connection under it.
  server.on('checkContinue', (req, res) => {
    const pathname = (req.url ?? '').split('?')[0];
    if (req.method === 'POST' && pathname === '/api/contents') {
      try {
        requireAdmin(req, admin.token);
      } catch (e) {
        baseHeaders(res);
        res.setHeader('Connection', 'close');
        return sendError(res, (e as HttpError).status, (e as HttpError).code, (e as Error).message);
      }
    }
    res.writeContinue();
    server.emit('request', req, res);
  });

  async function handleRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    baseHeaders(res);
    if (applyCors(req, res, corsOrigins)) return;
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return sendError(res, 400, 'bad-url', 'the request URL could not be parsed');
    }
    const match = router.match(req.method ?? 'GET', url.pathname);
    if (match === 'method-not-allowed') return sendError(res, 405, 'method-not-allowed', `${req.method} is not allowed on ${url.pathname}`);
    if (match) {
      try {
        await match.handler(req, res, match.params, url);
      } catch (e) {
        if (e instanceof HttpError) {
          if (!req.complete) res.setHeader('Connection', 'close');
          return sendError(res, e.status, e.code, e.message);
        }
        throw e;
      }
      return;
    }
    if (url.pathname.startsWith('/api/')) return sendError(res, 404, 'not-found', `no API endpoint ${url.pathname}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, 'method-not-allowed', `${req.method} is not allowed here`);
    if (await serveStatic(req, res, config.distDir, url.pathname)) return;
    if (PAGE_ROUTES.some((r) => r.test(url.pathname))) {
      if (await serveStatic(req, res, config.distDir, '/index.html')) return;
      return sendError(res, 503, 'not-built', `the web app is not built: run "npm run build" (looked in ${config.distDir})`);
    }
    sendError(res, 404, 'not-found', `nothing at ${url.pathname}`);
  }

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  // Encoders fetch source slices with the URL in their job; with a join token the URL carries it.
  const withJoinToken = (msg: ServerMessage): ServerMessage =>
    config.joinToken && msg.type === 'job'
      ? { ...msg, job: { ...msg.job, sourceUrl: `${msg.job.sourceUrl}${msg.job.sourceUrl.includes('?') ? '&' : '?'}token=${encodeURIComponent(config.joinToken)}` } }
      : msg;
  const refuseUpgrade = (socket: import('node:stream').Duplex, status: string, code: string, message: string) => {
    const body = JSON.stringify({ error: { code, message } });
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  };
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const pathname = (req.url ?? '').split('?')[0];
    if (pathname !== '/ws') return refuseUpgrade(socket, '404 Not Found', 'not-found', 'the WebSocket is at /ws');
    if (!originAllowed(req, allowedOrigins)) {
      refusals.badOrigin++;
      return refuseUpgrade(socket, '403 Forbidden', 'bad-origin', `origin ${req.headers.origin} may not open the pool socket (server option --allowed-origins)`);
    }
    const address = clientAddress(req, config.trustProxy);
    const refused = connections.open(address);
    if (refused) refusals.tooManyConnections++;
    if (refused) return refuseUpgrade(socket, '429 Too Many Requests', refused.code, refused.message);
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.once('close', () => connections.close(address));
      onSocket(ws);
    });
    // A failed handshake never reaches the callback: give the slot back.
    if (socket.destroyed) connections.close(address);
  });

  function onSocket(ws: WebSocket): void {
    let peerId: string | undefined;
    let bad = 0;
    const rate = new TokenBucket(config.wsMessagesPerSecond, config.wsMessageBurst);
    let rateLimited = 0;
    const conn = {
      send(msg: ServerMessage) {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(withJoinToken(msg)));
      },
      close(code: number, reason: string) {
        ws.close(code, reason);
      },
    };
    const helloTimer = setTimeout(() => ws.close(4001, 'no hello within 10 s'), HELLO_TIMEOUT_MS);
    ws.on('message', (data, isBinary) => {
      if (!rate.take()) {
        refusals.rateLimited++;
        // One error per refusal would double the flood back; every 50th is plenty of notice.
        if (rateLimited++ % 50 === 0) {
          conn.send({ type: 'error', code: 'rate-limited', message: `more than ${config.wsMessagesPerSecond} messages/s (burst ${config.wsMessageBurst}): messages are being dropped` });
        }
        if (rateLimited >= config.wsRateLimitedCloseAfter) ws.close(1008, 'rate limit exceeded');
        return;
      }
      try {
        const raw = isBinary ? new Uint8Array(data as Buffer) : (data as Buffer).toString('utf8');
        const r = parseClientMessage(raw);
        if (!r.ok) {
          pool.counters.badMessages++;
          conn.send({ type: 'error', code: r.code, message: r.message, ...(r.ref !== undefined && { ref: r.ref }) });
          if (++bad >= MAX_CONSECUTIVE_BAD) ws.close(1008, 'too many invalid messages');
          return;
        }
        bad = 0;
        if (!peerId) {
          if (r.msg.type !== 'hello') {
            conn.send({ type: 'error', code: 'hello-first', message: 'send hello before anything else', ref: r.msg.type });
            return;
          }
          if (config.joinToken && !tokenMatches(r.msg.token, config.joinToken)) {
            refusals.badJoinToken++;
            conn.send({ type: 'error', code: r.msg.token === undefined ? 'unauthorized' : 'forbidden', message: 'this pool needs a join token: open the page with ?token=<join token>', ref: 'hello' });
            ws.close(1008, 'join token required');
            return;
          }
          try {
            peerId = pool.join(conn, r.msg);
            clearTimeout(helloTimer);
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
            conn.send({ type: 'error', code: e.code, message: e.message, ref: 'hello' });
          }
          return;
        }
        pool.handle(peerId, r.msg);
      } catch (e) {
        // The server survives any input: a bug here costs one reply, not the process.
        console.error('websocket message failed:', e);
        conn.send({ type: 'error', code: 'internal', message: 'internal error handling that message' });
      }
    });
    ws.on('close', () => {
      clearTimeout(helloTimer);
      if (peerId) pool.leave(peerId, 'socket closed');
    });
    ws.on('error', () => ws.terminate());
  }

  pool.start();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
  log(
    admin.source === 'generated'
      ? `admin token generated into ${admin.file} (mode 0600): publish with "npx shardcast publish FILE --token $(cat ${admin.file})" or the token field on /publish`
      : admin.source === 'file'
        ? `admin token: ${admin.file} (publish with --token, SHARDCAST_TOKEN, or the token field on /publish)`
        : 'admin token: from the --admin-token option / SHARDCAST_ADMIN_TOKEN',
  );
  if (config.joinToken) log('join token required: tabs open /encode?token=... and /watch/ID?token=...');
  log(`shardcast listening on http://${shownHost}:${port} (data in ${path.relative(process.cwd(), config.dataDir) || '.'})`);

  let closed = false;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    store,
    pool,
    config,
    admin,
    refusals,
    connections: () => ({ open: connections.openCount, addresses: connections.addresses }),
    async close() {
      if (closed) return;
      closed = true;
      pool.stop();
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await store.close();
    },
  };
}
