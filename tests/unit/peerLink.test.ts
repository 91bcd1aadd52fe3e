/** The WebRTC link wrapper against a fake RTCPeerConnection: signalling order and send backpressure. */
import { describe, expect, it, vi } from 'vitest';
import { isSignalPayload, PeerLink, type RtcImpl, type SignalPayload } from '../../src/net/PeerLink.ts';

class FakeChannel extends EventTarget {
  bufferedAmount = 0;
  bufferedAmountLowThreshold = 0;
  binaryType = 'blob';
  readonly sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  send(d: unknown) {
    this.sent.push(d);
  }
  close() {
    this.dispatchEvent(new Event('close'));
    this.onclose?.();
  }
}

class FakePc {
  static last: FakePc | undefined;
  readonly calls: string[] = [];
  readonly channel = new FakeChannel();
  iceConnectionState = 'new';
  onicecandidate: ((e: { candidate: unknown }) => void) | null = null;
  oniceconnectionstatechange: (() => void) | null = null;
  ondatachannel: ((e: { channel: FakeChannel }) => void) | null = null;
  constructor() {
    FakePc.last = this;
  }
  createDataChannel() {
    return this.channel;
  }
  async createOffer() {
    return { type: 'offer', sdp: 'o' };
  }
  async createAnswer() {
    return { type: 'answer', sdp: 'a' };
  }
  async setLocalDescription(d: { type: string }) {
    this.calls.push(`local ${d.type}`);
  }
  async setRemoteDescription(d: { type: string }) {
    this.calls.push(`remote ${d.type}`);
  }
  async addIceCandidate(c: { candidate: string }) {
    this.calls.push(`candidate ${c.candidate}`);
  }
  close() {
    this.calls.push('close');
  }
}
const rtc = { RTCPeerConnection: FakePc } as unknown as RtcImpl;
const flush = () => new Promise((r) => setTimeout(r, 0));

describe('PeerLink', () => {
  it('answers an offer, holding candidates that came before it', async () => {
    const out: SignalPayload[] = [];
    const link = new PeerLink('r', false, { iceServers: [], rtc, signal: (s) => out.push(s) });
    const pc = FakePc.last!;
    link.signal({ type: 'candidate', candidate: { candidate: 'c1' } });
    link.signal({ type: 'offer', sdp: 'o' });
    link.signal({ type: 'candidate', candidate: { candidate: 'c2' } });
    await flush();
    expect(pc.calls).toEqual(['remote offer', 'candidate c1', 'local answer', 'candidate c2']);
    expect(out).toEqual([{ type: 'answer', sdp: 'a' }]);
    pc.ondatachannel!({ channel: pc.channel });
    pc.channel.onopen!();
    await link.opened;
    expect(pc.channel.binaryType).toBe('arraybuffer');
  });

  it('ends on a signal it cannot take, and its opened promise rejects', async () => {
    const link = new PeerLink('r', true, { iceServers: [], rtc, signal: () => {} });
    const closed = new Promise<string>((r) => link.on('close', ({ reason }) => r(reason)));
    link.signal({ type: 'offer', sdp: 'x' });
    expect(await closed).toMatch(/an offer to the side that made one/);
    await expect(link.opened).rejects.toThrow(/closed before it opened/);
  });

  it('waits while the send buffer is over 4 MiB, until it drains', async () => {
    vi.useFakeTimers();
    try {
      const link = new PeerLink('r', true, { iceServers: [], rtc, signal: () => {} });
      const ch = FakePc.last!.channel;
      ch.onopen!();
      ch.bufferedAmount = 5 * 2 ** 20;
      let sent = false;
      const p = link.send(new Uint8Array(10)).then(() => (sent = true));
      await vi.advanceTimersByTimeAsync(500);
      expect(sent).toBe(false);
      ch.bufferedAmount = 0;
      await vi.advanceTimersByTimeAsync(100); // the slow re-check, even without the event
      await p;
      expect(ch.sent).toHaveLength(1);
      expect(link.bytesSent).toBe(10);
    } finally {
      vi.useRealTimers();
    }
  });

  it('tells signals from junk', () => {
    expect(isSignalPayload({ type: 'offer', sdp: 'x' })).toBe(true);
    expect(isSignalPayload({ type: 'candidate', candidate: {} })).toBe(true);
    expect(isSignalPayload({ type: 'offer' })).toBe(false);
    expect(isSignalPayload('x')).toBe(false);
  });
});
