/**
 * Owns the connected peers and the resume secrets that let a reloaded tab
 * come back under its old id (and so its health and trust record). Ids are
 * public (/api/pool), so an id alone must not be enough to take one over.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Capabilities } from '../../src/shared/protocol.ts';
import type { Peer, PeerConnection, Role } from './types.ts';

/** Where a peer's derived sets live (its jobs in the ledger, its holdings in the index). */
export interface PeerViews {
  jobsOf(peerId: string): ReadonlySet<string>;
  holdingsOf(peerId: string): ReadonlySet<string>;
}

export class Sessions {
  private readonly connected = new Map<string, Peer>();
  /** Secret per peer id, kept after a peer leaves; oldest dropped past the cap. */
  private readonly resumeSecrets = new Map<string, string>();

  constructor(
    private readonly views: PeerViews,
    private readonly maxResumeSecrets = 100_000,
  ) {}

  get peers(): ReadonlyMap<string, Peer> {
    return this.connected;
  }

  get(peerId: string): Peer | undefined {
    return this.connected.get(peerId);
  }

  /**
   * Registers a peer at time `now` (ms). It keeps `wanted` as its id when that
   * id is free and `resume` is its secret; otherwise it gets a fresh id.
   * Returns the peer and its new resume secret (the old one stops working).
   */
  open(
    conn: PeerConnection,
    role: Role,
    now: number,
    capabilities: Capabilities | undefined,
    wanted?: string,
    resume?: string,
  ): { peer: Peer; resume: string } {
    let id = wanted;
    if (!id || this.connected.has(id) || !this.resumes(id, resume)) id = randomBytes(9).toString('base64url').replace(/[-_]/g, 'x');
    const secret = randomBytes(18).toString('base64url');
    this.resumeSecrets.delete(id);
    this.resumeSecrets.set(id, secret);
    if (this.resumeSecrets.size > this.maxResumeSecrets) this.resumeSecrets.delete(this.resumeSecrets.keys().next().value!);
    const views = this.views;
    const peerId = id;
    const peer: Peer = {
      id,
      role,
      conn,
      ...(capabilities && { capabilities }),
      joinedAt: now,
      lastSeen: now,
      get jobs() {
        return views.jobsOf(peerId);
      },
      get holdings() {
        return views.holdingsOf(peerId);
      },
      completedJobs: 0,
      failedJobs: 0,
      shardsEncoded: 0,
      activeJobsReported: 0,
      heldBytes: 0,
      serving: 0,
    };
    this.connected.set(id, peer);
    return { peer, resume: secret };
  }

  /** The connected peer `id` when `secret` is its current resume secret (the proof a tab gives over HTTP), else undefined. */
  authenticate(id: string, secret: string | undefined): Peer | undefined {
    const peer = this.connected.get(id);
    return peer && this.resumes(id, secret) ? peer : undefined;
  }

  private resumes(id: string, secret: string | undefined): boolean {
    const known = this.resumeSecrets.get(id);
    if (!known || !secret || known.length !== secret.length) return false;
    return timingSafeEqual(Buffer.from(known), Buffer.from(secret));
  }

  /** Removes a connected peer; returns it, or undefined if it was not connected. Its resume secret stays. */
  close(peerId: string): Peer | undefined {
    const peer = this.connected.get(peerId);
    if (peer) this.connected.delete(peerId);
    return peer;
  }

  /** A message arrived from the peer at `now` (ms). */
  seen(peerId: string, now: number): Peer | undefined {
    const peer = this.connected.get(peerId);
    if (peer) peer.lastSeen = now;
    return peer;
  }

  /** Peers not heard from since `cutoff` (ms). */
  silentSince(cutoff: number): Peer[] {
    return [...this.connected.values()].filter((p) => p.lastSeen < cutoff);
  }

  /** Closes every connection (shutdown). */
  closeAll(code: number, reason: string): void {
    for (const p of [...this.connected.values()]) p.conn.close(code, reason);
    this.connected.clear();
  }
}
