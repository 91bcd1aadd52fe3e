/**
 * A Node-side tab for server tests: a real WebSocket client speaking the real
 * protocol, with helpers to wait for messages.
 */
import WebSocket from 'ws';
import { parseServerMessage, type ClientMessage, type ServerMessage } from '../../src/shared/protocol.ts';

type Msg<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

export class WsPeer {
  readonly received: ServerMessage[] = [];
  peerId = '';
  private readonly waiters: { pred: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void; reject: (e: Error) => void }[] = [];
  closed: Promise<{ code: number; reason: string }>;
  private heartbeat: NodeJS.Timeout | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const r = parseServerMessage(data.toString());
      if (!r.ok) throw new Error(`server sent an invalid message: ${r.message}: ${data.toString().slice(0, 200)}`);
      this.received.push(r.msg);
      for (const w of [...this.waiters]) {
        if (w.pred(r.msg)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(r.msg);
        }
      }
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        clearInterval(this.heartbeat);
        for (const w of this.waiters.splice(0)) w.reject(new Error(`socket closed (${code}) while waiting`));
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  static async connect(base: string): Promise<WsPeer> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new WsPeer(ws);
  }

  /** Connects and joins as an encoder that can make H.264 and AAC. */
  static async encoder(base: string, extra: Partial<Extract<ClientMessage, { type: 'hello' }>> = {}): Promise<WsPeer> {
    const p = await WsPeer.connect(base);
    await p.hello({ role: 'encoder', capabilities: { engines: [{ name: 'test', codecs: ['h264', 'aac'] }], maxJobs: 1 }, ...extra });
    return p;
  }

  static async viewer(base: string): Promise<WsPeer> {
    const p = await WsPeer.connect(base);
    await p.hello({ role: 'viewer' });
    return p;
  }

  async hello(h: Partial<Extract<ClientMessage, { type: 'hello' }>>): Promise<Msg<'welcome'>> {
    const welcome = this.next('welcome');
    this.send({ type: 'hello', protocol: 1, role: 'viewer', ...h } as ClientMessage);
    const w = await welcome;
    this.peerId = w.peerId;
    // Like a real tab, keep the connection alive until told to go silent.
    this.heartbeat = setInterval(() => this.send({ type: 'heartbeat' }), w.heartbeatMs);
    return w;
  }

  send(msg: ClientMessage | Record<string, unknown>): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  /** Resolves with the first message (already received or coming) of `type` that matches. */
  next<T extends ServerMessage['type']>(type: T, pred: (m: Msg<T>) => boolean = () => true, timeoutMs = 10_000): Promise<Msg<T>> {
    const match = (m: ServerMessage): boolean => m.type === type && pred(m as Msg<T>);
    const have = this.received.find(match);
    if (have) {
      this.received.splice(this.received.indexOf(have), 1);
      return Promise.resolve(have as Msg<T>);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${type}; got ${this.received.map((m) => m.type).join(',')}`)), timeoutMs);
      this.waiters.push({
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        pred: match,
        resolve: (m) => {
          clearTimeout(timer);
          this.received.splice(this.received.indexOf(m), 1);
          resolve(m as Msg<T>);
        },
      });
    });
  }

  /** Stops heartbeats but keeps the socket open, like a hung tab. */
  silent(): void {
    clearInterval(this.heartbeat);
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.ws.close();
  }

  /** Drops the connection without a closing handshake, like a crashed tab. */
  kill(): void {
    clearInterval(this.heartbeat);
    this.ws.terminate();
  }
}

/** A fake but well-formed SHA-256 for server tests that carry no shard bytes. */
export function fakeHash(seed: string): string {
  let h = 0;
  for (const c of seed) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h.toString(16).padStart(8, '0').repeat(8);
}
