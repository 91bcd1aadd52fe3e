/**
 * The server's state for people and monitors: GET /api/health, GET /api/pool
 * (the pool's snapshot, shown by the /pool page) and GET /metrics (Prometheus
 * text).
 */
import { API_PATHS, type HealthResponse, type PoolSnapshot } from '../../src/shared/api.ts';
import type { EdgeContext } from '../context.ts';
import { sendJson, type Router } from '../http.ts';
import { renderMetrics } from '../metrics.ts';

export function poolRoutes(router: Router, ctx: EdgeContext): void {
  const { store, pool } = ctx;
  router
    .add('GET', API_PATHS.health, (_req, res) =>
      sendJson(res, 200, { ok: true, contents: store.all().length, peers: pool.peers.size } satisfies HealthResponse),
    )
    .add('GET', API_PATHS.pool, (_req, res) =>
      sendJson(res, 200, {
        ...pool.snapshot(),
        normalizing: ctx.mezzanines.all().map((p) => ({ id: p.id, name: p.name, reason: p.reason })),
      } satisfies PoolSnapshot),
    )
    .add('GET', API_PATHS.metrics, (_req, res) => {
      const text = renderMetrics(pool, store);
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(text);
    });
}
