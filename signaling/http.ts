/** Small HTTP helpers: JSON replies (compressed when large) with actionable coded errors, static files, and a router. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import Negotiator from 'negotiator';
import { ShardcastError, type ErrorCode } from '../src/shared/errors.ts';
import { compilePath } from '../src/shared/api.ts';
import { httpStatus } from './errorStatus.ts';

/**
 * Every response is same-origin only and cross-origin isolated: the
 * multi-thread ffmpeg core needs SharedArrayBuffer, which needs COOP+COEP.
 */
export function baseHeaders(res: ServerResponse): void {
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // Pages may carry a join token in ?token=: never hand it to another site in a Referer.
  res.setHeader('Referrer-Policy', 'no-referrer');
  // No other site may frame us (clickjacking: /publish takes the admin token). A page meant to be embedded opts out with allowFraming.
  res.setHeader('Content-Security-Policy', "frame-ancestors 'none'");
  res.setHeader('X-Frame-Options', 'DENY');
}

/** Lets any site frame this answer (an embeddable page): undoes baseHeaders' framing ban. Call before the head is written. */
export function allowFraming(res: ServerResponse): void {
  res.removeHeader('X-Frame-Options');
  res.setHeader('Content-Security-Policy', 'frame-ancestors *');
  // A cross-origin-isolated page (COEP) may frame it too.
  res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
}

/** JSON bodies below this are sent as they are: compressing them saves less than its headers cost. */
export const COMPRESS_MIN_BYTES = 1024;

const CODINGS = ['br', 'gzip', 'identity'] as const;

/**
 * The content coding to send a large body with: brotli or gzip when the
 * client's Accept-Encoding allows it (q-values honoured; brotli wins ties),
 * else undefined for identity.
 */
export function pickEncoding(req: Pick<IncomingMessage, 'headers'>): 'br' | 'gzip' | undefined {
  // @types/negotiator lags the library: encodings(available, { preferred }) breaks ties by our order, not the header's.
  const n = new Negotiator(req);
  const encodings = n.encodings.bind(n) as (available: readonly string[], options: { preferred: readonly string[] }) => string[];
  const best = encodings(CODINGS, { preferred: CODINGS })[0];
  return best === 'br' || best === 'gzip' ? best : undefined;
}

/**
 * Sends `body` as JSON with `status`. Bodies of COMPRESS_MIN_BYTES or more go
 * out brotli- or gzip-compressed when the request accepts it (a one-hour
 * content's map is megabytes of repetitive JSON), streamed so the event loop
 * is not held while it compresses.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  const size = Buffer.byteLength(text);
  const headers: Record<string, string | number> = { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' };
  const encoding = size >= COMPRESS_MIN_BYTES && res.req ? pickEncoding(res.req) : undefined;
  if (size >= COMPRESS_MIN_BYTES) {
    const vary = res.getHeader('Vary');
    headers.Vary = vary ? `${String(vary)}, Accept-Encoding` : 'Accept-Encoding';
  }
  if (!encoding) {
    res.writeHead(status, { ...headers, 'Content-Length': size });
    res.end(text);
    return;
  }
  res.writeHead(status, { ...headers, 'Content-Encoding': encoding });
  if (res.req?.method === 'HEAD') {
    res.end();
    return;
  }
  const z =
    encoding === 'br'
      ? // Quality 4 compresses a shard map nearly as well as 11 at a fraction of the CPU.
        zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: size } })
      : zlib.createGzip();
  z.on('error', () => res.destroy());
  z.pipe(res);
  z.end(text);
}

/** Answers a coded error: its status from the one table (errorStatus.ts), `{"error":{"code","message"}}`, Retry-After when it has one. */
export function sendError(res: ServerResponse, e: ShardcastError): void {
  if (e.retryAfterSeconds !== undefined && !res.headersSent) res.setHeader('Retry-After', String(e.retryAfterSeconds));
  sendJson(res, httpStatus(e), errorBody(e.code, e.message));
}

export function errorBody(code: ErrorCode, message: string): { error: { code: ErrorCode; message: string } } {
  return { error: { code, message } };
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.mp4': 'video/mp4',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/** Serves a file from `root` if `urlPath` names one inside it; returns false otherwise. */
export async function serveStatic(req: IncomingMessage, res: ServerResponse, root: string, urlPath: string): Promise<boolean> {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    return false;
  }
  const file = path.resolve(root, `.${path.posix.normalize(`/${rel}`)}`);
  if (!file.startsWith(root + path.sep)) return false;
  let st: fs.Stats;
  try {
    st = await fsp.stat(file);
  } catch {
    return false;
  }
  if (!st.isFile()) return false;
  const etag = `"${st.size.toString(16)}-${st.mtimeMs.toString(16)}"`;
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304).end();
    return true;
  }
  // Hashed build assets never change; everything else is revalidated.
  const immutable = /\/assets\/.+-[A-Za-z0-9_-]{8,}\.\w+$/.test(file);
  res.writeHead(200, {
    'Content-Type': MIME[path.extname(file)] ?? 'application/octet-stream',
    'Content-Length': st.size,
    ETag: etag,
    'Cache-Control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  if (req.method === 'HEAD') {
    res.end();
    return true;
  }
  await new Promise<void>((resolve) => {
    const s = fs.createReadStream(file);
    s.on('error', () => {
      res.destroy();
      resolve();
    });
    s.on('end', resolve);
    s.pipe(res);
  });
  return true;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, params: Record<string, string>, url: URL) => Promise<void> | void;

/**
 * A route's checks that need only the request head (credentials, target,
 * declared size, free slots): the edge runs them before a byte of the body is
 * read, answering "Expect: 100-continue" with them. Throws a ShardcastError to refuse.
 */
export type Admit = (req: IncomingMessage, params: Record<string, string>, url: URL) => void;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
  admit: Admit | undefined;
}

/** A percent-decoded path segment; a malformed escape (`%E0%A4%A`) is the client's mistake: bad-url, not a URIError. */
function decodePathPart(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ShardcastError('bad-url', `the path segment "${raw.slice(0, 100)}" has a malformed percent-escape`);
  }
}

/** Routes like `/api/contents/:id`; a path that matches with another method gets 405. */
export class Router {
  private readonly routes: Route[] = [];

  /** Adds a route; `admit`, if given, runs on the request head before `handler` (and before any 100 Continue). */
  add(method: string, pathPattern: string, handler: Handler, admit?: Admit): this {
    const { re, keys } = compilePath(pathPattern);
    this.routes.push({ method, pattern: re, keys, handler, admit });
    return this;
  }

  /** @throws ShardcastError bad-url when a matched path segment has a malformed percent-escape. */
  match(method: string, pathname: string): { handler: Handler; admit: Admit | undefined; params: Record<string, string> } | 'method-not-allowed' | undefined {
    let pathMatched = false;
    for (const r of this.routes) {
      const m = r.pattern.exec(pathname);
      if (!m) continue;
      pathMatched = true;
      if (r.method !== method && !(r.method === 'GET' && method === 'HEAD')) continue;
      const params: Record<string, string> = {};
      r.keys.forEach((k, i) => {
        params[k] = decodePathPart(m[i + 1]!);
      });
      return { handler: r.handler, admit: r.admit, params };
    }
    return pathMatched ? 'method-not-allowed' : undefined;
  }
}

/** The declared Content-Length, bytes; undefined when absent (a chunked body). */
export function declaredLength(req: Pick<IncomingMessage, 'headers'>): number | undefined {
  const raw = req.headers['content-length'];
  return raw === undefined ? undefined : Number(raw);
}

/** Refuses a body whose declared Content-Length passes `max` bytes (too-large), before it is read. */
export function refuseDeclaredOver(req: Pick<IncomingMessage, 'headers'>, max: number): void {
  const declared = declaredLength(req);
  if (declared !== undefined && declared > max) throw new ShardcastError('too-large', `body of ${declared} bytes exceeds the ${max}-byte limit`);
}

/**
 * Reads a whole request body, refusing more than `max` bytes (too-large, by
 * Content-Length or while streaming) and, with `timeoutMs`, a body still
 * arriving after that many ms (body-timeout). Reading stops at a refusal; the
 * edge answers with Connection: close, so the rest is never read.
 */
export async function readBody(req: IncomingMessage, max: number, timeoutMs?: number): Promise<Uint8Array> {
  refuseDeclaredOver(req, max);
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const stop = (e?: Error) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onAborted);
      if (e) {
        req.pause();
        reject(e);
      } else resolve();
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) stop(new ShardcastError('too-large', `body exceeds the ${max}-byte limit`));
      else chunks.push(c);
    };
    const onEnd = () => stop();
    const onError = (e: Error) => stop(e);
    const onAborted = () => stop(new ShardcastError('upload-aborted', 'the client closed the connection before the whole body arrived'));
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => stop(new ShardcastError('body-timeout', `the body did not arrive within ${timeoutMs} ms (${size} bytes received)`)), timeoutMs);
    req.on('data', onData).on('end', onEnd).on('error', onError).on('aborted', onAborted);
  });
  return new Uint8Array(Buffer.concat(chunks));
}
