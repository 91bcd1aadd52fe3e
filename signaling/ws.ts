/**
 * The pool WebSocket (/ws): the upgrade (path, Origin check, connection
 * limits), and per connection its message rate limit, parsing, the hello
 * handshake (join token; viewer token for viewers of private content) and dispatch to the pool manager. Owns the
 * per-connection state: peer id, rate bucket, bad-message streak.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { API_PATHS } from '../src/shared/api.ts';
import { ProtocolError, ShardcastError } from '../src/shared/errors.ts';
import { MAX_MESSAGE_BYTES, parseClientMessage, type ClientMessage, type ServerMessage } from '../src/shared/protocol.ts';
import { clientAddress, originAllowed, tokenMatches, viewerAllowed, type AccessTokens } from './auth.ts';
import type { ServerConfig } from './config.ts';
import type { Refusals } from './context.ts';
import { httpStatus } from './errorStatus.ts';
import { errorBody } from './http.ts';
import { ConnectionCounter, TokenBucket } from './limits.ts';
import type { PoolManager } from './PoolManager.ts';

/** A connection that keeps sending garbage is closed after this many invalid messages in a row. */
const MAX_CONSECUTIVE_BAD = 20;
const HELLO_TIMEOUT_MS = 10_000;

export interface PoolSocketOptions {
  config: ServerConfig;
  pool: PoolManager;
  refusals: Refusals;
  allowedOrigins: readonly string[];
  tokens: AccessTokens;
}

export interface PoolSocket {
  /** Open connections and distinct client addresses among them. */
  connections(): { open: number; addresses: number };
  /** Drops every connection. */
  close(): void;
}

/** Answers a refused upgrade with the coded error as JSON, then closes the socket. */
function refuseUpgrade(socket: Duplex, e: ShardcastError): void {
  const status = httpStatus(e);
  const body = JSON.stringify(errorBody(e.code, e.message));
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Takes over `server`'s upgrades to /ws. */
export function attachPoolSocket(server: http.Server, o: PoolSocketOptions): PoolSocket {
  const { config, refusals } = o;
  const limits = new ConnectionCounter(config.maxConnectionsPerIp, config.maxConnections);
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const pathname = (req.url ?? '').split('?')[0];
    if (pathname !== API_PATHS.ws) return refuseUpgrade(socket, new ShardcastError('not-found', `the WebSocket is at ${API_PATHS.ws}`));
    if (!originAllowed(req, o.allowedOrigins)) {
      refusals.badOrigin++;
      return refuseUpgrade(
        socket,
        new ShardcastError('bad-origin', `origin ${req.headers.origin} may not open the pool socket (server option --allowed-origins)`),
      );
    }
    const address = clientAddress(req, config.trustProxy);
    const refused = limits.open(address);
    if (refused) {
      refusals.tooManyConnections++;
      return refuseUpgrade(socket, new ShardcastError(refused.code, refused.message));
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.once('close', () => limits.close(address));
      new Connection(ws, o).listen();
    });
    // A failed handshake never reaches the callback: give the slot back.
    if (socket.destroyed) limits.close(address);
  });
  return {
    connections: () => ({ open: limits.openCount, addresses: limits.addresses }),
    close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
    },
  };
}

/** One tab's socket, from its hello to its close. */
class Connection {
  private peerId: string | undefined;
  private bad = 0;
  private rateLimited = 0;
  private readonly rate: TokenBucket;
  private readonly helloTimer: NodeJS.Timeout;
  /** What the pool manager talks to. */
  private readonly conn = {
    send: (msg: ServerMessage) => {
      if (this.ws.readyState !== this.ws.OPEN) return;
      // A client that stops reading would have the server queue every answer for it: past the bound it is cut off instead.
      if (this.ws.bufferedAmount > this.o.config.wsMaxBufferedBytes) return this.dropSlowReader();
      this.ws.send(JSON.stringify(this.withJoinToken(msg)));
    },
    close: (code: number, reason: string) => this.ws.close(code, reason),
  };

  constructor(
    private readonly ws: WebSocket,
    private readonly o: PoolSocketOptions,
  ) {
    this.rate = new TokenBucket(o.config.wsMessagesPerSecond, o.config.wsMessageBurst);
    this.helloTimer = setTimeout(() => ws.close(4001, 'no hello within 10 s'), HELLO_TIMEOUT_MS);
  }

  /**
   * Closes a connection whose unread output passed --ws-max-buffered-bytes.
   * terminate, not close: a close frame would queue behind what it does not read.
   */
  private dropSlowReader(): void {
    this.o.refusals.slowReaders++;
    this.ws.terminate();
  }

  listen(): void {
    this.ws.on('message', (data, isBinary) => this.onMessage(isBinary ? new Uint8Array(data as Buffer) : (data as Buffer).toString('utf8')));
    this.ws.on('close', () => {
      clearTimeout(this.helloTimer);
      if (this.peerId) this.o.pool.leave(this.peerId, 'socket closed');
    });
    this.ws.on('error', () => this.ws.terminate());
  }

  /** Encoders fetch source slices with the URL in their job; with a join token the URL carries it. */
  private withJoinToken(msg: ServerMessage): ServerMessage {
    const token = this.o.config.joinToken;
    if (!token || msg.type !== 'job') return msg;
    const url = msg.job.sourceUrl;
    return { ...msg, job: { ...msg.job, sourceUrl: `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` } };
  }

  private onMessage(raw: string | Uint8Array): void {
    const { config, pool, refusals } = this.o;
    if (!this.rate.take()) {
      refusals.rateLimited++;
      // One error per refusal would double the flood back; every 50th is plenty of notice.
      if (this.rateLimited++ % 50 === 0) {
        this.conn.send({
          type: 'error',
          code: 'rate-limited',
          message: `more than ${config.wsMessagesPerSecond} messages/s (burst ${config.wsMessageBurst}): messages are being dropped`,
        });
      }
      if (this.rateLimited >= config.wsRateLimitedCloseAfter) this.ws.close(1008, 'rate limit exceeded');
      return;
    }
    try {
      const r = parseClientMessage(raw);
      if (!r.ok) {
        pool.badMessage(this.peerId, r.code);
        this.conn.send({ type: 'error', code: r.code, message: r.message, ...(r.ref !== undefined && { ref: r.ref }) });
        if (++this.bad >= MAX_CONSECUTIVE_BAD) this.ws.close(1008, 'too many invalid messages');
        return;
      }
      this.bad = 0;
      if (this.peerId) pool.handle(this.peerId, r.msg);
      else this.onHello(r.msg);
    } catch (e) {
      // The server survives any input: a bug here costs one reply, not the process.
      console.error('websocket message failed:', e);
      this.conn.send({ type: 'error', code: 'internal', message: 'internal error handling that message' });
    }
  }

  /** The first message must be hello (with the token the pool needs for its role, helloRefusal). */
  private onHello(msg: ClientMessage): void {
    const { pool, refusals } = this.o;
    if (msg.type !== 'hello') {
      this.conn.send({ type: 'error', code: 'hello-first', message: 'send hello before anything else', ref: msg.type });
      return;
    }
    const refusal = helloRefusal(msg, this.o.tokens);
    if (refusal) {
      refusals.badJoinToken++;
      this.conn.send({ type: 'error', code: msg.token === undefined ? 'unauthorized' : 'forbidden', message: refusal, ref: 'hello' });
      this.ws.close(1008, msg.role === 'viewer' && this.o.tokens.viewerToken ? 'viewer token required' : 'join token required');
      return;
    }
    try {
      this.peerId = pool.join(this.conn, msg);
      clearTimeout(this.helloTimer);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.conn.send({ type: 'error', code: e.code, message: e.message, ref: 'hello' });
    }
  }
}

/**
 * Why a hello may not join, or undefined. Encoders need the join token when
 * one is set. Viewers of private content (a viewer token set) need the viewer,
 * join or admin token: watching is a content read; otherwise the join token
 * when one is set.
 */
function helloRefusal(hello: Extract<ClientMessage, { type: 'hello' }>, t: AccessTokens): string | undefined {
  if (hello.role === 'viewer' && t.viewerToken) {
    return viewerAllowed(hello.token, t) ? undefined : 'the contents on this server are private: open the page with ?token=<viewer token>';
  }
  if (t.joinToken && !tokenMatches(hello.token, t.joinToken)) return 'this pool needs a join token: open the page with ?token=<join token>';
  return undefined;
}
