/**
 * Access control: the admin token (publish, delete), the optional join token
 * (tabs joining the pool, source slices), the optional viewer token (every
 * content read: private content), the WebSocket Origin check and CORS.
 * See README "Security model" for which endpoint needs what.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerConfig } from './config.ts';
import { writeFileAtomicSync } from './fsutil.ts';
import { API_PATHS } from '../src/shared/api.ts';
import { ShardcastError } from '../src/shared/errors.ts';

export const ADMIN_TOKEN_FILE = 'admin-token';

export interface AdminToken {
  token: string;
  /** Where it came from, for the startup message. */
  source: 'config' | 'file' | 'generated';
  file: string;
}

/**
 * The configured admin token, else the one in DATA_DIR/admin-token, else a
 * new one written there (mode 0600, atomically, so a crash never leaves a
 * half-written token that would lock the owner out).
 */
export function loadAdminToken(config: Pick<ServerConfig, 'adminToken' | 'dataDir'>): AdminToken {
  const file = path.join(config.dataDir, ADMIN_TOKEN_FILE);
  if (config.adminToken) return { token: config.adminToken, source: 'config', file };
  try {
    const token = fs.readFileSync(file, 'utf8').trim();
    if (token) return { token, source: 'file', file };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  fs.mkdirSync(config.dataDir, { recursive: true });
  const token = randomBytes(24).toString('base64url');
  writeFileAtomicSync(file, `${token}\n`, 0o600);
  return { token, source: 'generated', file };
}

/** Compares without leaking the position of the first difference through timing. */
export function tokenMatches(given: string | undefined | null, expected: string): boolean {
  if (typeof given !== 'string') return false;
  // Hashing first makes the lengths equal, which timingSafeEqual needs.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/** Throws 401 (no token) or 403 (wrong token) unless the request carries the admin token. */
export function requireAdmin(req: IncomingMessage, adminToken: string): void {
  const given = bearerToken(req);
  if (given === undefined) {
    throw new ShardcastError(
      'unauthorized',
      'this call needs the admin token: send "Authorization: Bearer <token>" (the server prints where its token is at startup)',
    );
  }
  if (!tokenMatches(given, adminToken)) throw new ShardcastError('forbidden', 'the admin token is wrong');
}

/** With a join token configured, requires it as ?token= or a bearer token (the admin token also passes). */
export function requireJoin(req: IncomingMessage, url: URL, joinToken: string, adminToken: string): void {
  if (!joinToken) return;
  const given = url.searchParams.get('token') ?? bearerToken(req);
  if (given === undefined || given === null) throw new ShardcastError('unauthorized', 'this server needs the join token: add ?token=<join token>');
  if (!tokenMatches(given, joinToken) && !tokenMatches(given, adminToken)) throw new ShardcastError('forbidden', 'the join token is wrong');
}

/** The tokens a request may carry; empty ones are not configured. */
export interface AccessTokens {
  adminToken: string;
  joinToken: string;
  viewerToken: string;
}

/**
 * Whether a request is a content read: every GET or HEAD under /api/contents
 * (the list, maps, source slices, cached shards, export.mp4, and any route
 * added there later, such as HLS/DASH playlists), and the pool view (content
 * names, viewers' playheads). One rule, checked at the edge before any route
 * runs, so no read can be added without it.
 */
export function isContentRead(method: string | undefined, pathname: string): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  return pathname === API_PATHS.contents || pathname.startsWith(`${API_PATHS.contents}/`) || pathname === API_PATHS.pool;
}

/**
 * Whether `given` opens content reads: always when no viewer token is set;
 * else the viewer token, the join token (encoders are handed the content to
 * encode it anyway) or the admin token.
 */
export function viewerAllowed(given: string | undefined | null, t: AccessTokens): boolean {
  if (!t.viewerToken) return true;
  return [t.viewerToken, t.joinToken, t.adminToken].some((expected) => expected !== '' && tokenMatches(given, expected));
}

/**
 * With a viewer token configured (private content), requires it, or the join
 * or admin token, as `?token=` or `Authorization: Bearer`. Throws 401
 * unauthorized without a token, 403 forbidden with a wrong one.
 */
export function requireViewer(req: IncomingMessage, url: URL, t: AccessTokens): void {
  if (!t.viewerToken) return;
  const given = url.searchParams.get('token') ?? bearerToken(req);
  if (given === undefined || given === null) {
    throw new ShardcastError(
      'unauthorized',
      'the contents on this server are private: add ?token=<viewer token> or send "Authorization: Bearer <viewer token>"',
    );
  }
  if (!viewerAllowed(given, t)) throw new ShardcastError('forbidden', 'the viewer token is wrong');
}

export const splitList = (raw: string): string[] =>
  raw
    .split(',')
    .map((s) => s.trim().replace(/\/+$/, ''))
    .filter(Boolean);

/**
 * Whether a WebSocket upgrade may proceed. Browsers always send Origin, so a
 * page on another site cannot ride a visitor's browser into the pool. A
 * request without Origin is not a browser (our CLI, test peers, a native
 * client); it could send any Origin it liked anyway, so refusing it would
 * stop nobody: the join token is what keeps those out.
 */
export function originAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (allowed.length > 0) return allowed.includes('*') || allowed.includes(origin.replace(/\/+$/, ''));
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  return host !== '' && host === req.headers.host;
}

/**
 * Sets CORS headers for an allowed origin; answers allowed preflights (204).
 * Returns true when the request was a preflight (answered).
 * @throws ShardcastError bad-origin for a preflight from an origin not in --cors-origins (answered as JSON by the edge).
 */
export function applyCors(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  const ok = origin !== undefined && allowed.length > 0 && (allowed.includes('*') || allowed.includes(origin.replace(/\/+$/, '')));
  if (ok) {
    res.setHeader('Access-Control-Allow-Origin', allowed.includes('*') ? '*' : origin);
    res.setHeader('Vary', 'Origin');
    // Cross-origin readers need to be allowed to load our resources at all.
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
  }
  if (req.method !== 'OPTIONS') return false;
  if (!ok) {
    throw new ShardcastError(
      'bad-origin',
      origin === undefined
        ? 'OPTIONS is a CORS preflight: it needs an Origin header'
        : `origin ${origin} may not call this API cross-origin (server option --cors-origins)`,
    );
  }
  res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, POST, PUT, DELETE');
  res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, X-Filename, X-Shard-Duration');
  res.setHeader('Access-Control-Max-Age', '600');
  res.writeHead(204).end();
  return true;
}

/** Client address, honouring X-Forwarded-For only when told the proxy is trusted. */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = req.headers['x-forwarded-for'];
    const last = (Array.isArray(xff) ? xff.join(',') : (xff ?? ''))
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .pop();
    if (last) return last;
  }
  return req.socket.remoteAddress ?? 'unknown';
}
