/**
 * What is not an API route: the built web app's files, the single-page app's
 * client-side routes (answered with index.html), and the not-found answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ShardcastError } from '../../src/shared/errors.ts';
import { allowFraming, serveStatic } from '../http.ts';

/**
 * Client-side routes of the single-page app; each is answered with index.html.
 * No page may be framed by another site (baseHeaders) unless it says
 * `frameable`: a page made for embedding, never one that takes a token.
 */
const PAGE_ROUTES: { pattern: RegExp; frameable?: true }[] = [
  { pattern: /^\/$/ },
  { pattern: /^\/publish\/?$/ },
  { pattern: /^\/encode\/?$/ },
  { pattern: /^\/pool\/?$/ },
  { pattern: /^\/watch\/[^/]+\/?$/ },
  // The player alone, for other sites' iframes (src/ui/EmbedPage.svelte): it only plays, so framing it cannot trick a visitor into acting.
  { pattern: /^\/embed\/[^/]+\/?$/, frameable: true },
];

/** Serves a path no route matched from `distDir`; throws not-found, method-not-allowed or not-built. */
export async function serveApp(req: IncomingMessage, res: ServerResponse, distDir: string, pathname: string): Promise<void> {
  if (pathname.startsWith('/api/')) throw new ShardcastError('not-found', `no API endpoint ${pathname}`);
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new ShardcastError('method-not-allowed', `${req.method} is not allowed here`);
  if (await serveStatic(req, res, distDir, pathname)) return;
  const page = PAGE_ROUTES.find((r) => r.pattern.test(pathname));
  if (page) {
    if (page.frameable) allowFraming(res);
    if (await serveStatic(req, res, distDir, '/index.html')) return;
    throw new ShardcastError('not-built', `the web app is not built: run "npm run build" (looked in ${distDir})`);
  }
  throw new ShardcastError('not-found', `nothing at ${pathname}`);
}
