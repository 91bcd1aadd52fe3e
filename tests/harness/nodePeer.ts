/**
 * A Node-side tab with real WebRTC (@roamhq/wrtc, through PeerLink): the
 * same PeerManager and ShardTransfer the browser uses, signalled through the
 * real server. It can fetch shards, or serve whatever bytes a test gives it
 * (an honest copy, or corrupted ones).
 */
import wrtc from '@roamhq/wrtc';
import { PeerManager, type SignalTransport } from '../../src/net/PeerManager.ts';
import type { Holding } from '../../src/shared/protocol.ts';
import { ShardTransfer } from '../../src/net/ShardTransfer.ts';
import { shardKeyString, type ShardKey } from '../../src/shared/shardMap.ts';
import { WsPeer } from './wsPeer.ts';

export function transportOf(p: WsPeer): SignalTransport {
  return {
    get peerId() {
      return p.peerId;
    },
    iceServers: [],
    send: (m) => (p.send(m), true),
    on: (_type, fn) => {
      const h = (d: Buffer) => {
        const m = JSON.parse(d.toString());
        if (m.type === 'signal') fn(m);
      };
      p.ws.on('message', h);
      return () => p.ws.off('message', h);
    },
  };
}

export class NodePeer {
  readonly served = new Map<string, { bytes: Uint8Array; sha256: string }>();
  readonly transfers: ShardTransfer[] = [];
  private constructor(
    readonly ws: WsPeer,
    readonly peers: PeerManager,
  ) {
    peers.on('link', ({ link }) => this.transfers.push(ShardTransfer.of(link, { get: (k) => this.served.get(shardKeyString(k)) })));
  }

  /** Joins as an encoder that announces `holdings` and serves `served` for them. */
  static async holder(base: string, served: Map<string, { bytes: Uint8Array; sha256: string }>, holdings: Holding[]): Promise<NodePeer> {
    const ws = await WsPeer.encoder(base, { holdings, capabilities: { engines: [{ name: 'none', codecs: [] }], maxJobs: 1 } });
    const p = new NodePeer(ws, new PeerManager(transportOf(ws), { maxPeers: 16, wrtc }));
    for (const [k, v] of served) p.served.set(k, v);
    return p;
  }

  static async viewer(base: string): Promise<NodePeer> {
    const ws = await WsPeer.viewer(base);
    return new NodePeer(ws, new PeerManager(transportOf(ws), { maxPeers: 16, wrtc }));
  }

  async fetch(peerId: string, key: ShardKey, sha256: string | undefined, timeoutMs = 10_000) {
    const link = await this.peers.connect(peerId);
    return ShardTransfer.of(link).fetch(key, sha256, timeoutMs);
  }

  close(): void {
    this.peers.closeAll();
    this.ws.close();
  }
}
