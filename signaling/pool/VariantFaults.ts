/**
 * Who failed which variant, and how: the evidence that a failure is the job's
 * fault rather than the encoder's. When two different encoders fail the same
 * variant the same way (the same structure-check code, or the same job-failed
 * reason), the source slice or the map is wrong for that shard, not the
 * encoders: re-queueing it again would only fail again and put honest
 * encoders in quarantine (issue 17: an open-GOP slice short of two frames had
 * both encoders quarantined again and again, and starved the next content).
 *
 * Pure bookkeeping, bounded: entries exist only for variants that failed and
 * are neither accepted nor given up yet, at most one failure kind per encoder.
 */
import { variantKeyString, type VariantKey } from '../../src/shared/variantKey.ts';

/** A failure's kind: a structure-check code as it is, or a job-failed reason with its numbers blanked. */
export function failureKind(source: 'refused' | 'job-failed', detail: string): string {
  return `${source}:${detail.replace(/\d+(\.\d+)?/g, '#').slice(0, 160)}`;
}

export class VariantFaults {
  /** Variant key -> encoder id -> failure kind. */
  private readonly failures = new Map<string, Map<string, string>>();

  /**
   * Records that `peerId` failed `key` with failure `kind`. Returns the other encoders that failed the same variant
   * the same way: non-empty means the failure is the job's fault.
   */
  note(key: VariantKey, peerId: string, kind: string): string[] {
    const k = variantKeyString(key);
    let m = this.failures.get(k);
    if (!m) this.failures.set(k, (m = new Map()));
    m.set(peerId, kind);
    return [...m].filter(([p, why]) => p !== peerId && why === kind).map(([p]) => p);
  }

  /** The variant was accepted or given up: its record goes. */
  forget(key: VariantKey): void {
    this.failures.delete(variantKeyString(key));
  }

  /** Every record of a deleted content. */
  forgetContent(contentId: string): void {
    const prefix = `${contentId}/`;
    for (const k of [...this.failures.keys()]) if (k.startsWith(prefix)) this.failures.delete(k);
  }

  get size(): number {
    return this.failures.size;
  }
}
