/**
 * Replication in the encoder tab: when the pool asks for a copy of a shard
 * (it is hot, or its last holder left), fetch it from a holder over WebRTC,
 * or else from the server cache, verify it against the accepted hash, keep
 * it, and say so. Stateless between requests.
 */
import type { PeerManager } from '../net/PeerManager.ts';
import { readInit } from '../net/PoolClient.ts';
import { ShardTransfer } from '../net/ShardTransfer.ts';
import { apiUrl } from '../shared/api.ts';
import { TypedEmitter } from '../shared/events.ts';
import type { ClientMessage, ServerMessage } from '../shared/protocol.ts';
import { shardKeyString } from '../shared/shardMap.ts';
import { sha256Hex } from '../shared/wire.ts';
import { reportIfGone, type ShardStore } from './ShardStore.ts';

export type ReplicateRequest = Extract<ServerMessage, { type: 'replicate' }>;

export interface ReplicatorEvents {
  /** A verified copy is in the store. */
  stored: { bytes: number };
  log: { line: string };
}

export class Replicator extends TypedEmitter<ReplicatorEvents> {
  constructor(
    private readonly peers: PeerManager,
    private readonly store: ShardStore,
    private readonly send: (msg: ClientMessage) => boolean,
    private readonly timeoutMs: number,
    private readonly base: string,
  ) {
    super();
  }

  /** Answers one request with `shard-stored`, or `replicate-failed` naming every source tried. Never throws. */
  async replicate(m: ReplicateRequest): Promise<void> {
    const tried: string[] = [];
    const bytes = await fetchShardCopy(this.peers, this.base, this.timeoutMs, m, tried);
    if (!bytes) {
      this.send({ type: 'replicate-failed', key: m.key, reason: tried.join('; ').slice(0, 500) || 'no source' });
      return;
    }
    await this.store.put(m.key, m.sha256, bytes);
    this.emit('stored', { bytes: bytes.byteLength });
    this.send({ type: 'shard-stored', key: m.key, sha256: m.sha256, size: bytes.byteLength });
    reportIfGone(this.store, m.key, this.send);
    this.emit('log', { line: `replicated ${shardKeyString(m.key)} (${bytes.byteLength} bytes)` });
  }
}

/** Where a shard can be copied from: holders (peer ids, over WebRTC), then the server cache when `cached`. */
export interface ShardSources {
  key: ReplicateRequest['key'];
  sha256: string;
  from: readonly string[];
  cached: boolean;
}

/**
 * A copy of a shard checked against `sha256`: from the first holder that
 * sends good bytes, else the server cache. Undefined when every source
 * failed; `tried` gets one line per source tried. Never throws.
 */
export async function fetchShardCopy(peers: PeerManager, base: string, timeoutMs: number, m: ShardSources, tried: string[]): Promise<Uint8Array | undefined> {
  for (const peerId of m.from) {
    try {
      const link = await peers.connect(peerId);
      return (await ShardTransfer.of(link).fetch(m.key, m.sha256, timeoutMs)).bytes;
    } catch (e) {
      tried.push(`${peerId.slice(0, 6)}: ${(e as Error).message}`);
    }
  }
  if (!m.cached) return undefined;
  try {
    // Addressed by hash: a browser-cached copy of a replaced variant is never reused.
    const res = await fetch(new URL(apiUrl.cachedShard(m.key, m.sha256), base), readInit());
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const got = new Uint8Array(await res.arrayBuffer());
    if ((await sha256Hex(got)) !== m.sha256) throw new Error('hash mismatch');
    return got;
  } catch (e) {
    tried.push(`cache: ${(e as Error).message}`);
    return undefined;
  }
}
