/**
 * WebRTC data-channel links to other tabs, signalled through the pool
 * manager. Links are kept and reused, bounded in number (each costs a tab
 * about 13 MiB), and the least recently used one is closed past the bound.
 *
 * The simple-peer constructor is injected: the browser passes the prebuilt
 * bundle, Node tests pass the package with a `wrtc` implementation.
 */
import type SimplePeer from 'simple-peer';
import { TypedEmitter } from '../shared/events.ts';
import type { ClientMessage } from '../shared/protocol.ts';

export type PeerCtor = new (opts: SimplePeer.Options) => SimplePeer.Instance;

/** What a link sends and receives: JSON text or binary frames. */
export type LinkFrame = string | Uint8Array;

/**
 * Send-buffer levels: wait above HIGH until the channel drains to LOW (Chrome
 * kills a channel past ~16 MB). The same levels as the raw-channel figure in
 * bench e: at 1 MiB/256 KiB a 16 MiB transfer ran 0.80x raw, at these 0.89-1.24x
 * (noisy machine). A shard of normal size (~0.1 MB) never reaches either level.
 */
const BUFFER_HIGH = 4 * 2 ** 20;
const BUFFER_LOW = 1 * 2 ** 20;
/** How often a send waiting on a full buffer re-checks it (ms), in case the low-water event is missed. */
const BUFFER_POLL_MS = 100;

export interface PeerLinkEvents {
  open: Record<string, never>;
  frame: { frame: LinkFrame };
  close: { reason: string };
}

export class PeerLink extends TypedEmitter<PeerLinkEvents> {
  open = false;
  closed = false;
  lastUsed = Date.now();
  bytesSent = 0;
  bytesReceived = 0;
  readonly opened: Promise<void>;

  constructor(
    readonly remoteId: string,
    readonly initiator: boolean,
    readonly peer: SimplePeer.Instance,
  ) {
    super();
    this.opened = new Promise((resolve, reject) => {
      peer.on('connect', () => {
        this.open = true;
        this.emit('open', {});
        resolve();
      });
      peer.on('close', () => reject(new Error(`link to ${remoteId} closed before it opened`)));
      peer.on('error', (e: Error) => reject(e));
    });
    this.opened.catch(() => {});
    peer.on('data', (d: unknown) => {
      this.lastUsed = Date.now();
      const frame = typeof d === 'string' ? d : d instanceof Uint8Array ? d : new Uint8Array(d as ArrayBuffer);
      this.bytesReceived += typeof frame === 'string' ? frame.length : frame.byteLength;
      this.emit('frame', { frame });
    });
    const onEnd = (reason: string) => {
      if (this.closed) return;
      this.closed = true;
      this.open = false;
      this.emit('close', { reason });
    };
    peer.on('close', () => onEnd('closed'));
    peer.on('error', (e: Error) => onEnd(e.message));
  }

  private get channel(): RTCDataChannel | undefined {
    return (this.peer as unknown as { _channel?: RTCDataChannel })._channel ?? undefined;
  }

  /**
   * Sends one frame, waiting first while the channel's send buffer is full.
   * Uses the channel directly with our own low-water wait: simple-peer's
   * stream write() hangs when the threshold is raised (DESIGN.md).
   */
  async send(frame: LinkFrame): Promise<void> {
    if (this.closed) throw new Error(`link to ${this.remoteId} is closed`);
    const ch = this.channel;
    if (ch && ch.bufferedAmount > BUFFER_HIGH) {
      ch.bufferedAmountLowThreshold = BUFFER_LOW;
      await new Promise<void>((resolve, reject) => {
        // The event alone is not enough: @roamhq/wrtc (the Node peer of tests and tools) updates
        // bufferedAmount from its network thread, so the buffer can drain below the mark before the
        // threshold is set and the event never comes (measured: a second transfer on a link hung
        // forever, holding its serve slot). A slow re-check bounds the wait; browsers fire the event.
        const poll = setInterval(() => {
          if (ch.bufferedAmount <= BUFFER_LOW) done();
        }, BUFFER_POLL_MS);
        const done = () => {
          clearInterval(poll);
          ch.removeEventListener('bufferedamountlow', done);
          ch.removeEventListener('close', fail);
          resolve();
        };
        const fail = () => {
          clearInterval(poll);
          ch.removeEventListener('bufferedamountlow', done);
          reject(new Error(`link to ${this.remoteId} closed while sending`));
        };
        ch.addEventListener('bufferedamountlow', done);
        ch.addEventListener('close', fail, { once: true });
      });
    }
    if (this.closed) throw new Error(`link to ${this.remoteId} is closed`);
    this.peer.send(frame as string);
    this.lastUsed = Date.now();
    this.bytesSent += typeof frame === 'string' ? frame.length : frame.byteLength;
  }

  close(): void {
    this.peer.destroy();
  }
}

/** Signals carry which side of the pair they are for, so two tabs may each open a link to the other. */
type Envelope = { dir: 'to-responder' | 'to-initiator'; s: Record<string, unknown> };

export interface PeerManagerEvents {
  link: { link: PeerLink };
  'link-closed': { link: PeerLink; reason: string };
}

export interface SignalTransport {
  peerId: string | undefined;
  iceServers: RTCIceServer[];
  send(msg: ClientMessage): boolean;
  on(type: 'signal', fn: (m: { from: string; data: Record<string, unknown> }) => void): () => void;
}

export class PeerManager extends TypedEmitter<PeerManagerEvents> {
  private readonly outgoing = new Map<string, PeerLink>();
  private readonly incoming = new Map<string, PeerLink>();

  constructor(
    private readonly pool: SignalTransport,
    private readonly Peer: PeerCtor,
    private readonly opts: { maxPeers: number; wrtc?: SimplePeer.Options['wrtc']; connectTimeoutMs?: number },
  ) {
    super();
    pool.on('signal', ({ from, data }) => this.onSignal(from, data as Envelope));
  }

  get links(): PeerLink[] {
    return [...this.outgoing.values(), ...this.incoming.values()].filter((l) => !l.closed);
  }

  private create(remoteId: string, initiator: boolean): PeerLink {
    const peer = new this.Peer({
      initiator,
      trickle: true,
      objectMode: true,
      config: { iceServers: this.pool.iceServers },
      ...(this.opts.wrtc && { wrtc: this.opts.wrtc }),
    });
    const link = new PeerLink(remoteId, initiator, peer);
    const map = initiator ? this.outgoing : this.incoming;
    map.set(remoteId, link);
    peer.on('signal', (s: unknown) => {
      this.pool.send({
        type: 'signal',
        to: remoteId,
        data: { dir: initiator ? 'to-responder' : 'to-initiator', s: s as Record<string, unknown> },
      });
    });
    link.on('close', ({ reason }) => {
      if (map.get(remoteId) === link) map.delete(remoteId);
      this.emit('link-closed', { link, reason });
    });
    this.emit('link', { link });
    this.enforceLimit();
    return link;
  }

  private onSignal(from: string, env: Envelope): void {
    if (!env || typeof env !== 'object' || !env.s || typeof env.s !== 'object') return;
    try {
      if (env.dir === 'to-responder') {
        let link = this.incoming.get(from);
        if (!link || link.closed) link = this.create(from, false);
        link.peer.signal(env.s as unknown as SimplePeer.SignalData);
      } else if (env.dir === 'to-initiator') {
        this.outgoing.get(from)?.peer.signal(env.s as unknown as SimplePeer.SignalData);
      }
    } catch (e) {
      console.warn(`bad signal from ${from}:`, e);
    }
  }

  /** An open link to `remoteId`, reusing one in either direction when there is one. */
  async connect(remoteId: string): Promise<PeerLink> {
    const existing = [this.outgoing.get(remoteId), this.incoming.get(remoteId)].find((l) => l && !l.closed);
    if (existing) {
      await existing.opened;
      return existing;
    }
    const link = this.create(remoteId, true);
    const timeout = this.opts.connectTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        link.opened,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no WebRTC connection to ${remoteId} within ${timeout} ms`)), timeout);
        }),
      ]);
    } catch (e) {
      link.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return link;
  }

  private enforceLimit(): void {
    const all = this.links;
    if (all.length <= this.opts.maxPeers) return;
    all.sort((a, b) => a.lastUsed - b.lastUsed);
    for (const l of all.slice(0, all.length - this.opts.maxPeers)) l.close();
  }

  closeAll(): void {
    for (const l of this.links) l.close();
  }
}
