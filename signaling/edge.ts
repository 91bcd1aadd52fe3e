/**
 * The HTTP request path, route-independent: base and CORS headers, URL
 * parsing, dispatch through the router, the app's files for everything else,
 * and the one place thrown errors become answers (coded errors get their
 * status from errorStatus.ts; anything else is a logged 500).
 */
import type http from 'node:http';
import { ShardcastError } from '../src/shared/errors.ts';
import { applyCors, isContentRead, requireViewer, type AccessTokens } from './auth.ts';
import { baseHeaders, sendError, type Router } from './http.ts';
import { serveApp } from './routes/static.ts';

export interface EdgeOptions {
  router: Router;
  corsOrigins: readonly string[];
  distDir: string;
  /** The admin token guards publishing and deleting (routes); the viewer token every content read (here). */
  tokens: AccessTokens;
}

/** The server's 'request' listener. */
export function requestHandler(o: EdgeOptions): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    void handle(o, req, res).catch((e: unknown) => {
      if (e instanceof ShardcastError) return sendError(res, e);
      console.error('request failed:', e);
      sendError(res, new ShardcastError('internal', 'internal error; the server log has details'));
    });
  };
}

async function handle(o: EdgeOptions, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  baseHeaders(res);
  if (applyCors(req, res, o.corsOrigins)) return;
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://localhost');
  } catch {
    throw new ShardcastError('bad-url', 'the request URL could not be parsed');
  }
  // Private content: the one check every content read passes (routes added later included), before any route does work.
  if (isContentRead(req.method, url.pathname)) requireViewer(req, url, o.tokens);
  const match = o.router.match(req.method ?? 'GET', url.pathname);
  if (match === 'method-not-allowed') throw new ShardcastError('method-not-allowed', `${req.method} is not allowed on ${url.pathname}`);
  if (!match) return serveApp(req, res, o.distDir, url.pathname);
  try {
    match.admit?.(req, match.params, url);
    await match.handler(req, res, match.params, url);
  } catch (e) {
    // Refused before its body was read: the rest of it must not be taken for the next request.
    if (e instanceof ShardcastError && !req.complete) res.setHeader('Connection', 'close');
    throw e;
  }
}

/**
 * The server's 'checkContinue' listener. A client that sends "Expect:
 * 100-continue" (our CLI) is refused before it sends its body when the route's
 * admit check fails (no admin token, a shard upload with a bad token or
 * target, too large, no free slot); answering mid-body would cut the
 * connection under it. Anything else goes on as a normal request.
 */
export function continueHandler(server: http.Server, o: Pick<EdgeOptions, 'router'>): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const match = o.router.match(req.method ?? 'GET', url.pathname);
      if (match && match !== 'method-not-allowed') match.admit?.(req, match.params, url);
    } catch (e) {
      // Refused (or an unparseable URL): answered now, and the connection closed, so the body is never sent.
      if (!(e instanceof ShardcastError) && !(e instanceof TypeError)) throw e;
      baseHeaders(res);
      res.setHeader('Connection', 'close');
      return sendError(res, e instanceof ShardcastError ? e : new ShardcastError('bad-url', 'the request URL could not be parsed'));
    }
    res.writeContinue();
    server.emit('request', req, res);
  };
}
