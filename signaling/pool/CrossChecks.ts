/**
 * Owns the cross-check queue and its policy: after a job, maybe have a second
 * encoder of the same engine make the same shards (verify); where the two
 * differ a third decides (decide); the encoder found in the wrong is
 * convicted and its unverified shards are taken back. Which jobs are sampled
 * is Trust's policy; this module runs the checks (shards of engines whose
 * output differs run to run are verified by their pictures: Verification.ts).
 */
import { isVideoRendition } from '../../src/shared/shardMap.ts';
import { parseVariantKey, variantKeyString, type VariantKey } from '../../src/shared/variantKey.ts';
import type { ContentStore } from '../ContentStore.ts';
import type { Health } from '../policy/Health.ts';
import type { Trust } from '../policy/Trust.ts';
import type { AvailabilityIndex } from './AvailabilityIndex.ts';
import type { JobLedger } from './JobLedger.ts';
import { engineString } from './EngineClaims.ts';
import type { ActiveJob, CrossCheck, Outbox, Peer, Reported } from './types.ts';

export interface CrossCheckConfig {
  /** Comma-separated engine names known to be deterministic (only those are compared by hash). */
  verifyEngines: string;
  /** Most checks waiting; the newest beyond are dropped (counted unverifiable). */
  verifyQueueMax: number;
}

/** What the pool does for cross-checks that is not theirs to own. */
export interface CrossCheckHost {
  /** Records a holder if the peer is still connected (and under its holdings cap). */
  addHolder(peerId: string, key: string): void;
  /** A replica record goes with a dropped holder. */
  forgetReplica(peerId: string, key: string): void;
  quarantined(peerId: string, reason: string): void;
  /** Coalesced scheduling after the current burst of events. */
  scheduleSoon(): void;
}

/** A check an encoder with a free slot takes: the shards still worth checking. */
export interface CheckPick {
  peer: Peer;
  check: CrossCheck;
  indices: number[];
}

export class CrossChecks {
  /** Checks waiting for an able verifier, oldest first ('decide' ones go first). */
  readonly queue: CrossCheck[] = [];

  constructor(
    private readonly store: ContentStore,
    private readonly index: AvailabilityIndex,
    private readonly ledger: JobLedger,
    private readonly trust: Trust,
    private readonly health: Health,
    private readonly outbox: Outbox,
    private readonly host: CrossCheckHost,
    private readonly config: CrossCheckConfig,
  ) {}

  /** After an encoder's job: maybe queue a check of the shards it made and still holds. */
  afterJob(peer: Peer, aj: ActiveJob): void {
    const content = this.store.get(aj.job.contentId);
    if (!content) return;
    const expected = new Map<number, string>();
    let engine: string | undefined;
    for (const s of aj.job.shards) {
      const st = content.map.shards[s.index]?.renditions[aj.job.rendition];
      if (
        st?.status !== 'ready' ||
        !st.sha256 ||
        !this.index.holds(peer.id, variantKeyString({ contentId: aj.job.contentId, rendition: aj.job.rendition, index: s.index }))
      )
        continue;
      expected.set(s.index, st.sha256);
      engine ??= st.engine;
    }
    if (expected.size === 0) return;
    // An engine not known to be deterministic would be blamed for its own noise by a hash comparison
    // (the picture engines were offered to Verification first: PoolManager.jobDone).
    if (!engine || !this.hashComparable(engine)) {
      this.trust.counters.unverifiable += expected.size;
      return;
    }
    if (!this.trust.shouldCheck(peer.id)) return;
    this.enqueue({
      stage: 'verify',
      contentId: aj.job.contentId,
      rendition: aj.job.rendition,
      indices: [...expected.keys()],
      engine,
      origin: peer.id,
      expected,
      exclude: new Set([peer.id]),
    });
  }

  /** Whether shards of this engine string are compared by hash (--verify-engines names the deterministic ones). */
  private hashComparable(engine: string): boolean {
    return this.config.verifyEngines
      .split(',')
      .map((e) => e.trim())
      .includes(engine.split('@')[0]!);
  }

  /**
   * Has an accepted shard of `origin`'s encoded again by another encoder, as
   * the server's own check of a viewer's report (a report alone convicts
   * nobody; a failed check does). False when the shard cannot be checked by
   * hash or a check of it is already waiting.
   */
  recheck(origin: string, k: VariantKey): boolean {
    const st = this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition];
    if (st?.status !== 'ready' || !st.sha256 || !st.engine || !this.hashComparable(st.engine)) return false;
    if (this.queue.some((c) => c.contentId === k.contentId && c.rendition === k.rendition && c.indices.includes(k.index))) return false;
    this.enqueue({
      stage: 'verify',
      contentId: k.contentId,
      rendition: k.rendition,
      indices: [k.index],
      engine: st.engine,
      origin,
      expected: new Map([[k.index, st.sha256]]),
      exclude: new Set([origin]),
    });
    return true;
  }

  private enqueue(c: CrossCheck): void {
    if (c.stage === 'decide') this.queue.unshift(c);
    else this.queue.push(c);
    while (this.queue.length > this.config.verifyQueueMax) this.trust.counters.unverifiable += this.queue.pop()!.indices.length;
    this.outbox.emit('check-planned', { stage: c.stage, origin: c.origin, key: `${c.contentId}/${c.rendition}/${c.indices[0]}`, shards: c.indices.length });
    this.host.scheduleSoon();
  }

  /** A check's job went back: the check goes to the front of the queue, for someone else. */
  requeue(c: CrossCheck, peerId: string): void {
    c.exclude.add(peerId);
    this.queue.unshift(c);
  }

  /**
   * Gives waiting checks to encoders with a free slot that run the same engine
   * and are not party to them. Decrements `free` of each encoder picked.
   */
  take(slots: { peer: Peer; free: number }[]): CheckPick[] {
    const picks: CheckPick[] = [];
    for (let i = 0; i < this.queue.length; i++) {
      const c = this.queue[i]!;
      const content = this.store.get(c.contentId);
      // Shards replaced or revoked meanwhile are not checked against a stale hash.
      const indices = content ? c.indices.filter((x) => content.map.shards[x]?.renditions[c.rendition]?.sha256 === c.expected.get(x)) : [];
      if (indices.length === 0) {
        this.queue.splice(i--, 1);
        continue;
      }
      const r = content!.map.renditions.find((x) => x.id === c.rendition)!;
      const codec = isVideoRendition(r) ? r.video.codec : r.audio.codec;
      const engineName = c.engine.split('@')[0];
      // The verifier must make shards under the same engine string, or its hashes prove nothing either way.
      const able = (p: Peer) => p.capabilities?.engines.some((e) => e.name === engineName && e.codecs.includes(codec) && engineString(e) === c.engine) ?? false;
      // A holder of one of the shards would overwrite the copy it serves with its re-encode: not asked.
      const holdsAny = (p: Peer) => indices.some((x) => this.index.holds(p.id, variantKeyString({ contentId: c.contentId, rendition: c.rendition, index: x })));
      const slot = slots.find(({ peer: p, free }) => free > 0 && !c.exclude.has(p.id) && !this.health.isQuarantined(p.id) && !holdsAny(p) && able(p));
      if (!slot) continue;
      this.queue.splice(i--, 1);
      c.indices = indices;
      slot.free--;
      picks.push({ peer: slot.peer, check: c, indices });
    }
    return picks;
  }

  /** A verifier's shard-ready: one that agrees holds a verified copy; a decider's verdict waits for the whole job. */
  reported(peer: Peer, aj: ActiveJob, key: VariantKey, shard: Reported): void {
    aj.done.add(key.index);
    aj.results!.set(key.index, shard);
    if (aj.check!.stage !== 'verify') return;
    const st = this.store.get(key.contentId)?.map.shards[key.index]?.renditions[key.rendition];
    if (st?.status === 'ready' && st.sha256 === shard.sha256) {
      this.host.addHolder(peer.id, variantKeyString(key));
      this.outbox.send(peer.id, { type: 'shard-accepted', key, sha256: shard.sha256 });
    } else this.outbox.send(peer.id, { type: 'shard-rejected', key, reason: 'cross-check: differs from the accepted variant; a third encoder decides' });
  }

  /** A check job finished: compare, and either pass the checked encoder, ask a third, or convict. */
  done(peer: Peer, aj: ActiveJob): void {
    const c = aj.check!;
    const results = aj.results!;
    const keyOf = (index: number) => variantKeyString({ contentId: c.contentId, rendition: c.rendition, index });
    const st = (index: number) => this.store.get(c.contentId)?.map.shards[index]?.renditions[c.rendition];
    // Hashes of different engines or builds prove nothing either way.
    const comparable = c.indices.filter((i) => results.get(i)?.engine === c.engine && st(i)?.sha256 === c.expected.get(i));
    this.trust.counters.unverifiable += c.indices.length - comparable.length;
    if (c.stage === 'verify') {
      const differ = comparable.filter((i) => results.get(i)!.sha256 !== c.expected.get(i));
      for (const i of comparable) if (!differ.includes(i)) this.trust.verified(c.origin, keyOf(i));
      if (differ.length === 0) {
        this.trust.passed(c.origin);
        this.outbox.emit('check-passed', { origin: c.origin, verifier: peer.id, key: keyOf(c.indices[0]!), shards: comparable.length });
        return;
      }
      this.trust.counters.mismatches += differ.length;
      this.enqueue({ ...c, stage: 'decide', disputed: differ, verifier: peer.id, verifierResults: results, exclude: new Set([...c.exclude, peer.id]) });
      return;
    }
    this.decide(peer, c, results, comparable);
  }

  /** Decide: the third encode sides with the checked encoder or with the verifier. */
  private decide(peer: Peer, c: CrossCheck, results: Map<number, Reported>, comparable: number[]): void {
    const originWrong: number[] = [];
    const verifierWrong: number[] = [];
    for (const i of c.indices) {
      const k = { contentId: c.contentId, rendition: c.rendition, index: i };
      const mine = results.get(i);
      if (!comparable.includes(i) || !mine) {
        this.outbox.send(peer.id, { type: 'shard-rejected', key: k, reason: 'cross-check: not comparable' });
        continue;
      }
      if (c.disputed && !c.disputed.includes(i)) {
        // Not in dispute: the first two agreed. The decider's copy is one more holder if it agrees too.
        if (mine.sha256 === c.expected.get(i)) {
          this.host.addHolder(peer.id, variantKeyString(k));
          this.outbox.send(peer.id, { type: 'shard-accepted', key: k, sha256: mine.sha256 });
        } else this.outbox.send(peer.id, { type: 'shard-rejected', key: k, reason: 'cross-check: differs from the accepted variant' });
        continue;
      }
      if (mine.sha256 === c.expected.get(i)) {
        verifierWrong.push(i);
        this.trust.verified(c.origin, variantKeyString(k));
        this.host.addHolder(peer.id, variantKeyString(k));
        this.outbox.send(peer.id, { type: 'shard-accepted', key: k, sha256: mine.sha256 });
      } else if (mine.sha256 === c.verifierResults?.get(i)?.sha256) {
        originWrong.push(i);
        this.replaceVariant(k, peer, mine, c.origin);
      } else {
        this.trust.counters.inconclusive++;
        this.outbox.send(peer.id, { type: 'shard-rejected', key: k, reason: 'cross-check: three encodes, three results' });
      }
    }
    if (originWrong.length) this.convict(c.origin, originWrong.length);
    if (verifierWrong.length && c.verifier) this.convict(c.verifier, verifierWrong.length);
  }

  /** Two encoders agree against the accepted variant: theirs replaces it, and every copy of the old one is dropped. */
  private replaceVariant(k: VariantKey, decider: Peer, shard: Reported, wrong: string): void {
    const key = variantKeyString(k);
    this.trust.settle(wrong, key);
    this.outbox.emit('shard-revoked', { key: k, peerId: wrong, reason: 'replaced after a cross-check' });
    this.store.accept(k.contentId, k.rendition, k.index, {
      sha256: shard.sha256,
      size: shard.size,
      ...(shard.engine !== undefined && { engine: shard.engine }),
      ...(shard.lead !== undefined && { lead: shard.lead }),
      ...(shard.tail !== undefined && { tail: shard.tail }),
    });
    this.index.clearOrphan(key);
    this.host.addHolder(decider.id, key);
    this.dropOtherHolders(key, decider.id, 'the variant was replaced after a cross-check');
    this.outbox.send(decider.id, { type: 'shard-accepted', key: k, sha256: shard.sha256 });
    this.outbox.emit('shard-accepted', { key: k, peerId: decider.id, sha256: shard.sha256, ...(shard.bytes && { bytes: shard.bytes }), replaced: true });
  }

  /** Holders other than `keep` hold bytes that are no longer the accepted variant. */
  private dropOtherHolders(key: string, keep: string | undefined, reason: string): void {
    const k = parseVariantKey(key)!;
    for (const p of this.index.removeAllBut(key, keep)) {
      this.host.forgetReplica(p, key);
      this.outbox.send(p, { type: 'release', key: k, reason });
    }
  }

  /**
   * An encoder was found in the wrong by two others: quarantine, and its
   * accepted shards that no check covered are taken back (not served,
   * encoded again by others), since they may be wrong too. Picture
   * verification (Verification.ts) convicts through here too.
   */
  convict(peerId: string, wrong: number): void {
    const revoked = this.trust.failed(peerId);
    for (const key of revoked) {
      const k = parseVariantKey(key);
      const st = k && this.store.get(k.contentId)?.map.shards[k.index]?.renditions[k.rendition];
      if (!k || st?.status !== 'ready') continue;
      this.outbox.emit('shard-revoked', { key: k, peerId, reason: 'its encoder failed a cross-check' });
      this.store.revoke(k.contentId, k.rendition, k.index);
      this.index.clearOrphan(key);
      this.dropOtherHolders(key, undefined, 'revoked: its encoder failed a cross-check');
      this.ledger.forgetAttempts(key);
    }
    this.outbox.emit('encoder-convicted', { peerId, wrong, revoked: revoked.length });
    const reason = this.health.crossCheckFailed(peerId, wrong);
    if (reason) this.host.quarantined(peerId, reason);
    this.host.scheduleSoon();
  }

  /** A content was deleted: its waiting checks go. */
  forgetContent(contentId: string): void {
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.contentId === contentId) this.queue.splice(i, 1);
  }
}
