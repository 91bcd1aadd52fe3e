/**
 * One simulated viewer tab (SimViewer): the watch it plays, the holders it
 * tries in the watch page's order, its peer connections (at most maxPeers,
 * least recently used closed) and its stalls.
 */
import type { HolderEntry, ServerMessage } from '../../../src/shared/protocol.ts';
import { SimClient, type SimContent } from './simClient.ts';
import { bump, keyStr } from './util.ts';

export class SimViewer extends SimClient {
  content!: SimContent;
  pos = 0;
  private fetched = new Set<string>();
  private holders = new Map<string, HolderEntry>();
  private lastLocate = 0;
  private pendingLocate: { id: number; at: number } | undefined;
  private stalledSince: number | undefined;
  private started = false;
  private watchStart = 0;
  private lastTick = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private nextRequest = 1;
  /** Open peer connections of this watch, by peer id: when last used (PeerManager's LRU limit). */
  private readonly conns = new Map<string, number>();

  start(): void {
    this.pick();
    this.connect({ role: 'viewer' });
  }

  private pick(): void {
    this.content = this.sim.pickContent();
    this.pos = 0;
    this.fetched.clear();
    this.holders.clear();
    // A new watch is a new page: its connections start from none.
    this.conns.clear();
    this.started = false;
    this.stalledSince = undefined;
    this.watchStart = Date.now();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === 'welcome') {
      this.startHeartbeat(msg.heartbeatMs, () => ({}));
      this.lastTick = Date.now();
      this.tickTimer = setInterval(() => this.tick(), 250);
    } else if (msg.type === 'holders') {
      if (this.pendingLocate?.id === msg.requestId) {
        this.sim.locateRtt.push(Date.now() - this.pendingLocate.at);
        this.pendingLocate = undefined;
      }
      if (msg.contentId !== this.content.id) return;
      for (const e of msg.shards) this.holders.set(`${e.rendition}/${e.index}`, e);
      this.fetchWindow();
    }
  }

  private stopped = false;

  onClose(code: number, reason: string): void {
    clearInterval(this.tickTimer);
    if (!this.stopped) bump(this.sim.r.protocol.unexpectedCloses, `viewer ${code} ${reason}`);
  }

  /** Stops watching but stays connected, heartbeating like an open tab. */
  pause(): void {
    clearInterval(this.tickTimer);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.tickTimer);
    clearInterval(this.heartbeatTimer);
    this.ws?.terminate();
  }

  private shardAt(t: number): number {
    const s = this.content.starts;
    let lo = 0;
    let hi = s.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (s[mid]! <= t + 1e-9) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private tracks(): ('video' | 'audio')[] {
    return this.content.audio ? ['video', 'audio'] : ['video'];
  }

  private tick(): void {
    const now = Date.now();
    const dt = now - this.lastTick;
    this.lastTick = now;
    const o = this.sim.o;
    const c = this.content;
    const cur = this.shardAt(this.pos);
    if (!this.pendingLocate && now - this.lastLocate >= o.locateEveryMs) this.locate(cur);
    else if (this.pendingLocate && now - this.pendingLocate.at > 10_000) {
      this.sim.r.viewers.locatesUnanswered++;
      this.pendingLocate = undefined;
    }
    this.fetchWindow();
    // Play: the shard under the playhead must be here in every track, else stall, and skip after a grace.
    const missing = this.tracks().filter((t) => !this.fetched.has(`${t}/${cur}`));
    if (missing.length === 0) {
      if (!this.started) {
        this.started = true;
        this.sim.startup.push(now - this.watchStart);
      }
      if (this.stalledSince !== undefined) this.sim.r.viewers.stallSeconds += (now - this.stalledSince) / 1000;
      this.stalledSince = undefined;
      this.pos += (dt / 1000) * o.timeScale;
      if (this.pos >= c.duration - 1e-6) {
        this.sim.r.viewers.watchesFinished++;
        this.pick();
        this.locate(0);
      }
      return;
    }
    this.stalledSince ??= now;
    const grace = this.started ? o.missingGraceMs : o.startWaitMs;
    if (now - this.stalledSince < grace) return;
    for (const t of missing) {
      const renditions = t === 'video' ? c.video : [c.audio!];
      const encoded = renditions.some((r) => this.holders.get(`${r}/${cur}`)?.sha256 !== undefined);
      if (encoded) this.sim.r.viewers.missesNoHolder++;
      else this.sim.r.viewers.missesUnencoded++;
      this.fetched.add(`${t}/${cur}`);
    }
  }

  private locate(from: number): void {
    const id = this.nextRequest++;
    this.lastLocate = Date.now();
    this.pendingLocate = { id, at: this.lastLocate };
    const count = Math.ceil(this.sim.o.lookAheadSeconds / this.content.map.shardDuration) + 4;
    this.send({ type: 'locate', requestId: id, contentId: this.content.id, from, count });
  }

  /** Fetches every shard of the look-ahead window that someone can provide, like the watch page. */
  private fetchWindow(): void {
    const c = this.content;
    const first = this.shardAt(this.pos);
    const last = this.shardAt(this.pos + this.sim.o.lookAheadSeconds);
    for (let i = first; i <= last; i++) {
      for (const t of this.tracks()) {
        const fk = `${t}/${i}`;
        if (this.fetched.has(fk)) continue;
        const renditions = t === 'video' ? c.video : [c.audio!];
        let got = false;
        let cached = false;
        for (const r of renditions) {
          const e = this.holders.get(`${r}/${i}`);
          if (!e) continue;
          cached ||= e.cached;
          const k = keyStr(c.id, r, i);
          // The watch page's own order (Viewer.fromPeers), the same expression with the seeded generator: the
          // server's list (least busy first) shuffled by a random comparator, then connected peers first.
          const order = [...e.peers].sort(() => this.sim.rand() - 0.5).sort((a, b) => Number(this.conns.has(b)) - Number(this.conns.has(a)));
          for (const p of order) {
            const enc = this.sim.byPeerId.get(p);
            if (enc && enc.live && enc.holdings.has(k)) {
              enc.serve('view', c.id);
              this.usePeer(p);
              got = true;
              break;
            } else {
              // A peer that left takes its connection with it.
              if (!enc?.live) this.conns.delete(p);
              // The server listed a holder that left, went silent or released the shard: a wasted connection
              // attempt, which a tab would not repeat until the next locate.
              this.sim.r.viewers.staleHolderPicks++;
              e.peers = e.peers.filter((x) => x !== p);
            }
          }
          if (got) break;
        }
        if (got) this.sim.r.viewers.fromPeers++;
        else if (cached) this.sim.r.viewers.fromCache++;
        else continue;
        this.fetched.add(fk);
      }
    }
  }

  /** Opens (or reuses) a connection to `peerId`, closing the least recently used beyond maxPeers. */
  private usePeer(peerId: string): void {
    this.conns.delete(peerId);
    this.conns.set(peerId, Date.now());
    // Map order is insertion order and every use re-inserts: the first entries are the least recently used.
    while (this.conns.size > this.sim.o.maxPeers) this.conns.delete(this.conns.keys().next().value!);
  }
}
