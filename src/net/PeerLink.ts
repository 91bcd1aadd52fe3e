/**
 * One WebRTC data-channel link to another tab: a thin wrapper that owns one
 * RTCPeerConnection and its one data channel. It replaces simple-peer (last
 * release 2022; shardcast had to reach into its private `_channel` to send
 * with its own backpressure), so this is the only module that touches
 * RTCPeerConnection.
 *
 * Signalling is trickle ICE: the initiator sends an offer, the responder an
 * answer, both their candidates; candidates that come before the remote
 * description are held until it is set. Browsers use the global
 * RTCPeerConnection; Node test peers pass @roamhq/wrtc as `rtc`.
 */
import { TypedEmitter } from '../shared/events.ts';

/** What a link sends and receives: JSON text or binary frames. */
export type LinkFrame = string | Uint8Array;

/** One signalling message between the two ends (relayed by the pool as `signal` data). */
export type SignalPayload = { type: 'offer' | 'answer'; sdp: string } | { type: 'candidate'; candidate: RTCIceCandidateInit };

/** A WebRTC implementation: the browser's globals, or @roamhq/wrtc in Node. */
export interface RtcImpl {
  RTCPeerConnection: new (config?: RTCConfiguration) => RTCPeerConnection;
}

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

export interface PeerLinkOptions {
  iceServers: RTCIceServer[];
  /** Sends one signalling message to the other end. */
  signal: (s: SignalPayload) => void;
  /** Default: the global RTCPeerConnection (browsers). */
  rtc?: RtcImpl;
}

/** Whether `s` is a signalling message this module understands (the pool relays whatever a peer sends). */
export function isSignalPayload(s: unknown): s is SignalPayload {
  if (!s || typeof s !== 'object') return false;
  const m = s as Record<string, unknown>;
  if (m.type === 'offer' || m.type === 'answer') return typeof m.sdp === 'string';
  return m.type === 'candidate' && !!m.candidate && typeof m.candidate === 'object';
}

export class PeerLink extends TypedEmitter<PeerLinkEvents> {
  open = false;
  closed = false;
  lastUsed = Date.now();
  bytesSent = 0;
  bytesReceived = 0;
  /** Resolves when the channel opens; rejects when the link ends first. */
  readonly opened: Promise<void>;
  private readonly pc: RTCPeerConnection;
  private channel: RTCDataChannel | undefined;
  private readonly early: RTCIceCandidateInit[] = [];
  private remoteSet = false;
  /** Signals are applied one at a time, in order. */
  private chain: Promise<void> = Promise.resolve();
  private settle!: { resolve: () => void; reject: (e: Error) => void };

  constructor(
    readonly remoteId: string,
    readonly initiator: boolean,
    private readonly opts: PeerLinkOptions,
  ) {
    super();
    this.opened = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.opened.catch(() => {});
    const Ctor = opts.rtc?.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this.pc = new Ctor({ iceServers: opts.iceServers });
    this.pc.onicecandidate = (e) => {
      const c = e.candidate;
      if (c?.candidate) opts.signal({ type: 'candidate', candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } });
    };
    this.pc.oniceconnectionstatechange = () => {
      const s = this.pc.iceConnectionState;
      if (s === 'failed' || s === 'closed') this.end(`ICE connection ${s}`);
    };
    if (initiator) {
      this.attach(this.pc.createDataChannel('shardcast'));
      this.chain = this.offer().catch((e: Error) => this.end(`could not make an offer: ${e.message}`));
    } else {
      this.pc.ondatachannel = (e) => this.attach(e.channel);
    }
  }

  private async offer(): Promise<void> {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.opts.signal({ type: 'offer', sdp: offer.sdp ?? '' });
  }

  /** Applies a signalling message from the other end; one that fails ends the link. */
  signal(s: SignalPayload): void {
    this.chain = this.chain.then(() => this.apply(s)).catch((e: Error) => this.end(`bad signal: ${e.message}`));
  }

  private async apply(s: SignalPayload): Promise<void> {
    if (this.closed) return;
    if (s.type === 'candidate') {
      if (this.remoteSet) await this.pc.addIceCandidate(s.candidate);
      else this.early.push(s.candidate);
      return;
    }
    if (s.type === 'offer' && this.initiator) throw new Error('an offer to the side that made one');
    if (s.type === 'answer' && !this.initiator) throw new Error('an answer to the side that answers');
    await this.pc.setRemoteDescription({ type: s.type, sdp: s.sdp });
    this.remoteSet = true;
    for (const c of this.early.splice(0)) await this.pc.addIceCandidate(c);
    if (s.type === 'offer') {
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      this.opts.signal({ type: 'answer', sdp: answer.sdp ?? '' });
    }
  }

  private attach(ch: RTCDataChannel): void {
    this.channel = ch;
    ch.binaryType = 'arraybuffer';
    ch.onopen = () => {
      this.open = true;
      this.emit('open', {});
      this.settle.resolve();
    };
    ch.onmessage = (ev: MessageEvent) => {
      this.lastUsed = Date.now();
      const d: unknown = ev.data;
      const frame = typeof d === 'string' ? d : d instanceof Uint8Array ? d : new Uint8Array(d as ArrayBuffer);
      this.bytesReceived += typeof frame === 'string' ? frame.length : frame.byteLength;
      this.emit('frame', { frame });
    };
    ch.onclose = () => this.end('closed');
    ch.onerror = (ev: Event) => this.end((ev as Event & { error?: Error }).error?.message ?? 'data channel error');
  }

  /**
   * Sends one frame, waiting first while the channel's send buffer is above
   * BUFFER_HIGH until it drains to BUFFER_LOW (our own low-water wait: never
   * raise the threshold and hand the bytes to a library's stream, DESIGN.md).
   * Throws when the link is closed or closes while waiting.
   */
  async send(frame: LinkFrame): Promise<void> {
    const ch = this.channel;
    if (this.closed || !ch) throw new Error(`link to ${this.remoteId} is closed`);
    if (ch.bufferedAmount > BUFFER_HIGH) await this.drained(ch);
    if (this.closed) throw new Error(`link to ${this.remoteId} is closed`);
    if (typeof frame === 'string') ch.send(frame);
    else ch.send(frame as Uint8Array<ArrayBuffer>);
    this.lastUsed = Date.now();
    this.bytesSent += typeof frame === 'string' ? frame.length : frame.byteLength;
  }

  private drained(ch: RTCDataChannel): Promise<void> {
    ch.bufferedAmountLowThreshold = BUFFER_LOW;
    return new Promise<void>((resolve, reject) => {
      // The event alone is not enough: @roamhq/wrtc (the Node peer of tests and tools) updates
      // bufferedAmount from its network thread, so the buffer can drain below the mark before the
      // threshold is set and the event never comes (measured: a second transfer on a link hung
      // forever, holding its serve slot). A slow re-check bounds the wait; browsers fire the event.
      const poll = setInterval(() => {
        if (this.closed) fail();
        else if (ch.bufferedAmount <= BUFFER_LOW) done();
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
        ch.removeEventListener('close', fail);
        reject(new Error(`link to ${this.remoteId} closed while sending`));
      };
      ch.addEventListener('bufferedamountlow', done);
      ch.addEventListener('close', fail, { once: true });
    });
  }

  close(): void {
    this.end('closed');
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    this.settle.reject(new Error(`link to ${this.remoteId} closed before it opened (${reason})`));
    try {
      this.channel?.close();
      this.pc.close();
    } catch {
      /* already closed */
    }
    this.emit('close', { reason });
  }
}
