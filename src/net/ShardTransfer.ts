/**
 * Shard transfers over one PeerLink, in both directions, speaking the wire
 * protocol (./wire.ts): a holder answers `request`s from its store, a
 * requester gets verified bytes or an error. One instance per link.
 */
import { TypedEmitter } from '../shared/events.ts';
import type { PeerLink } from './PeerManager.ts';
import { shardKeyString, type ShardKey } from '../shared/shardMap.ts';
import { Assembly, chunksOf, decodeWire, encodeCommand, sha256Hex, WireError, type WireCommand } from '../shared/wire.ts';

export interface ShardSource {
  /** The bytes and hash of a held shard, or undefined. */
  get(key: ShardKey): { bytes: Uint8Array; sha256: string } | undefined;
}

/** Bounds the transfers a tab serves at once, over all its links. */
export class ServeLimiter {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async acquire(): Promise<() => void> {
    if (this.running >= this.max) await new Promise<void>((r) => this.queue.push(r));
    this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      this.queue.shift()?.();
    };
  }
  /** Transfers being served now, and waiting to be: how busy this holder is (reported in heartbeats). */
  get busy(): number {
    return this.running + this.queue.length;
  }
}

export class FetchError extends Error {
  constructor(
    readonly code: 'absent' | 'timeout' | 'hash-mismatch' | 'closed' | 'protocol',
    message: string,
  ) {
    super(message);
    this.name = 'FetchError';
  }
}

export interface TransferEvents {
  served: { key: ShardKey; bytes: number; ms: number };
  'bad-frame': { reason: string };
}

interface Pending {
  key: ShardKey;
  expected: string | undefined;
  assembly?: Assembly;
  resolve: (v: { bytes: Uint8Array; sha256: string }) => void;
  reject: (e: FetchError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** The one transfer of each link. */
const byLink = new WeakMap<PeerLink, ShardTransfer>();

/**
 * The shard protocol over one link, both ways. There must be exactly one per
 * link: two would both read every frame, and a response meant for one
 * request would be taken by another with the same id (seen here as hash
 * mismatches between honest peers). Get it with `ShardTransfer.of(link)`.
 */
export class ShardTransfer extends TypedEmitter<TransferEvents> {
  /** Request ids start at a random point, so a stale answer from an earlier session never matches. */
  private nextId = 1 + Math.floor(Math.random() * 2 ** 30);
  private readonly pending = new Map<number, Pending>();
  private readonly serving = new Map<number, { cancelled: boolean }>();
  bytesServed = 0;

  /** The link's transfer, made on first use; a source given later (to serve) is attached to it. */
  static of(link: PeerLink, source?: ShardSource, limiter?: ServeLimiter): ShardTransfer {
    let t = byLink.get(link);
    if (!t) {
      t = new ShardTransfer(link, source, limiter);
    } else if (source && !t.source) {
      t.source = source;
      t.limiter = limiter;
    }
    return t;
  }

  private constructor(
    readonly link: PeerLink,
    private source: ShardSource | undefined,
    private limiter: ServeLimiter | undefined,
  ) {
    super();
    byLink.set(link, this);
    link.on('frame', ({ frame }) => this.onFrame(frame));
    link.on('close', () => {
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new FetchError('closed', `link to ${link.remoteId} closed during the transfer`));
      }
      this.pending.clear();
      for (const s of this.serving.values()) s.cancelled = true;
    });
  }

  private onFrame(frame: string | Uint8Array): void {
    let m;
    try {
      m = decodeWire(frame);
    } catch (e) {
      this.emit('bad-frame', { reason: (e as Error).message });
      return;
    }
    if (m.t === 'chunk') {
      const p = this.pending.get(m.id);
      if (!p?.assembly) return; // a chunk for a cancelled request
      try {
        p.assembly.add(m.data);
      } catch (e) {
        this.fail(m.id, new FetchError('protocol', (e as WireError).message));
      }
      return;
    }
    switch (m.t) {
      case 'request':
        void this.serve(m);
        return;
      case 'cancel': {
        const s = this.serving.get(m.id);
        if (s) s.cancelled = true;
        return;
      }
      case 'header': {
        const p = this.pending.get(m.id);
        if (!p) return;
        if (p.expected && m.sha256 !== p.expected) {
          this.cancel(m.id);
          this.fail(m.id, new FetchError('hash-mismatch', `peer ${this.link.remoteId} offers other bytes than the accepted ones`));
          return;
        }
        try {
          p.assembly = new Assembly(m.size, m.sha256);
        } catch (e) {
          this.fail(m.id, new FetchError('protocol', (e as Error).message));
        }
        return;
      }
      case 'done': {
        const p = this.pending.get(m.id);
        if (!p) return;
        if (!p.assembly?.complete) {
          this.fail(m.id, new FetchError('protocol', `peer ${this.link.remoteId} ended the transfer early`));
          return;
        }
        void this.finish(m.id, p);
        return;
      }
      case 'absent': {
        this.fail(
          m.id,
          new FetchError(
            'absent',
            `peer ${this.link.remoteId} does not hold ${shardKeyString(this.pending.get(m.id)?.key ?? { contentId: '?', rendition: '?', index: 0 })}${m.reason ? `: ${m.reason}` : ''}`,
          ),
        );
        return;
      }
    }
  }

  private async finish(id: number, p: Pending): Promise<void> {
    const bytes = p.assembly!.bytes();
    const hash = await sha256Hex(bytes);
    if (!this.pending.has(id)) return;
    // Never hand on bytes whose hash is not the accepted one (or, without one, the announced one).
    const want = p.expected ?? p.assembly!.sha256;
    if (hash !== want) {
      this.fail(id, new FetchError('hash-mismatch', `bytes from ${this.link.remoteId} hash to ${hash.slice(0, 12)}…, expected ${want.slice(0, 12)}…`));
      return;
    }
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.resolve({ bytes, sha256: hash });
  }

  private fail(id: number, e: FetchError): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.reject(e);
  }

  private cancel(id: number): void {
    void this.link.send(encodeCommand({ t: 'cancel', id })).catch(() => {});
  }

  /** Fetches one shard variant; the bytes are verified against `sha256` (the accepted hash) when given. */
  fetch(key: ShardKey, sha256: string | undefined, timeoutMs: number): Promise<{ bytes: Uint8Array; sha256: string }> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.cancel(id);
        this.fail(id, new FetchError('timeout', `no shard from ${this.link.remoteId} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { key, expected: sha256, resolve, reject, timer });
      this.link.send(encodeCommand({ t: 'request', id, key })).catch((e: Error) => this.fail(id, new FetchError('closed', e.message)));
    });
  }

  private async serve(req: Extract<WireCommand, { t: 'request' }>): Promise<void> {
    const send = (c: WireCommand) => this.link.send(encodeCommand(c));
    const held = this.source?.get(req.key);
    if (!held) {
      await send({ t: 'absent', id: req.id }).catch(() => {});
      return;
    }
    const release = this.limiter ? await this.limiter.acquire() : () => {};
    const state = { cancelled: false };
    this.serving.set(req.id, state);
    const t0 = performance.now();
    try {
      await send({ t: 'header', id: req.id, size: held.bytes.byteLength, sha256: held.sha256 });
      for (const chunk of chunksOf(req.id, held.bytes)) {
        if (state.cancelled) return;
        await this.link.send(chunk);
      }
      await send({ t: 'done', id: req.id });
      this.bytesServed += held.bytes.byteLength;
      this.emit('served', { key: req.key, bytes: held.bytes.byteLength, ms: performance.now() - t0 });
    } catch {
      /* the link went away mid-transfer; the requester sees it closed */
    } finally {
      this.serving.delete(req.id);
      release();
    }
  }
}
