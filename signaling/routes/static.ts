/**
 * What is not an API route: the built web app's files, the single-page app's
 * client-side routes (answered with index.html), and the not-found answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ShardcastError } from '../../src/shared/errors.ts';
import { serveStatic } from '../http.ts';

/** The player alone, for other sites' iframes (src/ui/EmbedPage.svelte). */
const EMBED_ROUTE = /^\/embed\/[^/]+\/?$/;

/** Client-side routes of the single-page app; each is answered with index.html. */
const PAGE_ROUTES = [/^\/$/, /^\/publish\/?$/, /^\/encode\/?$/, /^\/pool\/?$/, /^\/watch\/[^/]+\/?$/, EMBED_ROUTE];

/**
 * The embed page may be framed by any site: that is what it is for, and it
 * offers nothing to click that changes state (it only plays), so framing it
 * cannot trick a visitor into acting. It also opts out of the same-origin
 * resource policy, so a cross-origin-isolated page (COEP) may frame it too.
 */
function frameable(res: ServerResponse): void {
  res.removeHeader('X-Frame-Options');
  res.setHeader('Content-Security-Policy', 'frame-ancestors *');
  res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
}

/** Serves a path no route matched from `distDir`; throws not-found, method-not-allowed or not-built. */
export async function serveApp(req: IncomingMessage, res: ServerResponse, distDir: string, pathname: string): Promise<void> {
  if (pathname.startsWith('/api/')) throw new ShardcastError('not-found', `no API endpoint ${pathname}`);
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new ShardcastError('method-not-allowed', `${req.method} is not allowed here`);
  if (await serveStatic(req, res, distDir, pathname)) return;
  if (PAGE_ROUTES.some((r) => r.test(pathname))) {
    if (EMBED_ROUTE.test(pathname)) frameable(res);
    if (await serveStatic(req, res, distDir, '/index.html')) return;
    throw new ShardcastError('not-built', `the web app is not built: run "npm run build" (looked in ${distDir})`);
  }
  throw new ShardcastError('not-found', `nothing at ${pathname}`);
}
