/**
 * A tab's connection to the pool manager (browser side): joins with `hello`,
 * keeps heartbeats going, validates everything the server sends, reconnects
 * with the same peer id after a drop, and turns `locate` into a promise.
 */
import { apiUrl } from '../shared/api.ts';
import { TypedEmitter } from '../shared/events.ts';
import { parseServerMessage, PROTOCOL_VERSION, type ClientMessage, type HolderEntry, type ServerMessage } from '../shared/protocol.ts';

type Hello = Extract<ClientMessage, { type: 'hello' }>;
type ServerEvents = { [M in ServerMessage as M['type']]: M };

export interface PoolClientEvents extends ServerEvents {
  state: { state: 'connecting' | 'open' | 'closed'; detail?: string };
}

export interface PoolClientOptions {
  url: string;
  /** Builds the hello for each (re)connection, so holdings can be re-announced. */
  hello: () => Omit<Hello, 'type' | 'protocol' | 'peerId' | 'resume'> | Promise<Omit<Hello, 'type' | 'protocol' | 'peerId' | 'resume'>>;
  /** Extra fields for each heartbeat. */
  heartbeat?: () => Omit<Extract<ClientMessage, { type: 'heartbeat' }>, 'type'>;
  reconnectMs?: number;
}

export class PoolClient extends TypedEmitter<PoolClientEvents> {
  private ws: WebSocket | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private reconnect: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private nextRequest = 1;
  private readonly pendingLocates = new Map<number, { resolve: (h: HolderEntry[]) => void; reject: (e: Error) => void }>();
  peerId: string | undefined;
  /** Proves our peer id when we reconnect. */
  private resume: string | undefined;
  iceServers: RTCIceServer[] = [];
  state: 'connecting' | 'open' | 'closed' = 'closed';
  /** Errors the server sent back, newest last (for the page). */
  readonly errors: { code: string; message: string }[] = [];

  constructor(private readonly opts: PoolClientOptions) {
    super();
    this.on('error', (e) => {
      this.errors.push({ code: e.code, message: e.message });
      if (this.errors.length > 20) this.errors.shift();
    });
  }

  /** Our peer id and resume secret while connected: what proves this tab over HTTP (a mezzanine claim). */
  get credentials(): { peerId: string; resume: string } | undefined {
    return this.state === 'open' && this.peerId && this.resume ? { peerId: this.peerId, resume: this.resume } : undefined;
  }

  connect(): void {
    this.stopped = false;
    this.setState('connecting');
    const ws = new WebSocket(this.opts.url);
    this.ws = ws;
    ws.onopen = async () => {
      const hello = await this.opts.hello();
      const token = hello.token ?? joinTokenFromPage();
      ws.send(
        JSON.stringify({
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          ...(this.peerId && this.resume && { peerId: this.peerId, resume: this.resume }),
          ...(token && { token }),
          ...hello,
        }),
      );
    };
    ws.onmessage = (ev) => {
      const r = parseServerMessage(typeof ev.data === 'string' ? ev.data : '');
      if (!r.ok) {
        console.warn(`pool sent an invalid message (${r.message})`);
        return;
      }
      const msg = r.msg;
      if (msg.type === 'welcome') {
        this.peerId = msg.peerId;
        this.resume = msg.resume;
        this.iceServers = msg.iceServers as RTCIceServer[];
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => this.send({ type: 'heartbeat', ...this.opts.heartbeat?.() }), msg.heartbeatMs);
        this.setState('open');
      } else if (msg.type === 'holders') {
        const p = this.pendingLocates.get(msg.requestId);
        this.pendingLocates.delete(msg.requestId);
        p?.resolve(msg.shards);
      }
      (this.emit as (t: string, e: unknown) => void)(msg.type, msg);
    };
    ws.onclose = (ev) => {
      clearInterval(this.heartbeat);
      for (const p of this.pendingLocates.values()) p.reject(new Error('connection to the pool closed'));
      this.pendingLocates.clear();
      this.setState('closed', ev.reason || `code ${ev.code}`);
      if (!this.stopped) this.reconnect = setTimeout(() => this.connect(), this.opts.reconnectMs ?? 1000);
    };
  }

  private setState(state: PoolClient['state'], detail?: string): void {
    this.state = state;
    this.emit('state', { state, ...(detail !== undefined && { detail }) });
  }

  send(msg: ClientMessage): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Asks which peers hold shards [from, from+count) of a content. */
  locate(contentId: string, from: number, count: number, renditions?: string[]): Promise<HolderEntry[]> {
    const requestId = this.nextRequest++;
    return new Promise((resolve, reject) => {
      this.pendingLocates.set(requestId, { resolve, reject });
      const sent = this.send({ type: 'locate', requestId, contentId, from, count, ...(renditions && { renditions }) });
      if (!sent) {
        this.pendingLocates.delete(requestId);
        reject(new Error('not connected to the pool'));
      }
    });
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.reconnect);
    clearInterval(this.heartbeat);
    this.ws?.close();
  }
}

/** The pool's WebSocket URL for the page's own origin. */
/**
 * A pool that needs a join token, or private content (a viewer token), is
 * opened with `?token=...` on the page's URL (encode, watch, list and pool pages).
 */
export function joinTokenFromPage(loc: Pick<Location, 'search'> | undefined = globalThis.location): string | undefined {
  if (!loc) return undefined;
  return new URLSearchParams(loc.search).get('token') || undefined;
}

/**
 * fetch() options for a content read with the page's token (README "Security
 * model": private content). It goes in a header, not the URL, so it stays out
 * of server and proxy access logs. No token: no header.
 */
export function readInit(token: string | undefined = joinTokenFromPage()): RequestInit {
  return token ? { headers: { Authorization: `Bearer ${token}` } } : {};
}

/** `path` with the page's token as `?token=`, for links a browser follows itself (a download); unchanged without one. */
export function withPageToken(path: string, token: string | undefined = joinTokenFromPage()): string {
  if (!token) return path;
  return `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

export function poolUrl(loc: Location = location): string {
  return apiUrl.ws(loc);
}
