/**
 * The tab's WebRTC links to other tabs, signalled through the pool manager.
 * Owns the set of links (one outgoing and one incoming per remote at most):
 * links are kept and reused, bounded in number (each costs a tab about
 * 13 MiB), and the least recently used one is closed past the bound.
 *
 * Browsers use their own RTCPeerConnection; Node tests and tools pass
 * @roamhq/wrtc as `wrtc` (see ./PeerLink.ts, the one module that touches it).
 */
import { TypedEmitter } from '../shared/events.ts';
import type { ClientMessage } from '../shared/protocol.ts';
import { isSignalPayload, PeerLink, type RtcImpl } from './PeerLink.ts';

export { PeerLink, type LinkFrame, type PeerLinkEvents, type RtcImpl, type SignalPayload } from './PeerLink.ts';

/** Signals carry which side of the pair they are for, so two tabs may each open a link to the other. */
type Envelope = { dir: 'to-responder' | 'to-initiator'; s: unknown };

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

  /**
   * `opts.maxPeers`: links kept open at most; `opts.wrtc`: a WebRTC
   * implementation for Node (default: the browser's); `opts.connectTimeoutMs`:
   * how long connect() waits for a channel to open (default 10 s).
   */
  constructor(
    private readonly pool: SignalTransport,
    private readonly opts: { maxPeers: number; wrtc?: RtcImpl; connectTimeoutMs?: number },
  ) {
    super();
    pool.on('signal', ({ from, data }) => this.onSignal(from, data as Envelope));
  }

  get links(): PeerLink[] {
    return [...this.outgoing.values(), ...this.incoming.values()].filter((l) => !l.closed);
  }

  private create(remoteId: string, initiator: boolean): PeerLink {
    const link = new PeerLink(remoteId, initiator, {
      iceServers: this.pool.iceServers,
      ...(this.opts.wrtc && { rtc: this.opts.wrtc }),
      signal: (s) => {
        this.pool.send({ type: 'signal', to: remoteId, data: { dir: initiator ? 'to-responder' : 'to-initiator', s } });
      },
    });
    const map = initiator ? this.outgoing : this.incoming;
    map.set(remoteId, link);
    link.on('close', ({ reason }) => {
      if (map.get(remoteId) === link) map.delete(remoteId);
      this.emit('link-closed', { link, reason });
    });
    this.emit('link', { link });
    this.enforceLimit();
    return link;
  }

  private onSignal(from: string, env: Envelope): void {
    if (!env || typeof env !== 'object' || !isSignalPayload(env.s)) {
      console.warn(`bad signal from ${from}: not an offer, answer or candidate`);
      return;
    }
    if (env.dir === 'to-responder') {
      let link = this.incoming.get(from);
      // Any signal may come first (candidates are held until the offer is in).
      if (!link || link.closed) link = this.create(from, false);
      link.signal(env.s);
    } else if (env.dir === 'to-initiator') {
      this.outgoing.get(from)?.signal(env.s);
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
