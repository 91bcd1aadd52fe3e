/**
 * Small, allocation-bounded limiters: a token bucket for message rates, a
 * per-address connection counter and a counter of concurrent uploads. Every
 * refusal carries a stable code so clients can tell limits from errors.
 */

/** Allows `rate` events per second on average and bursts of up to `burst`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Takes one token; false when the bucket is empty. */
  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export type ConnectionRefusal = { code: 'too-many-connections'; message: string };

/**
 * Open connections per client address and in total. The map holds only
 * addresses with open connections, so it is bounded by the total cap.
 */
export class ConnectionCounter {
  private readonly byAddress = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly perAddress: number,
    private readonly overall: number,
  ) {}

  /** Counts a new connection, or says why it is refused (0 means no limit). */
  open(address: string): ConnectionRefusal | undefined {
    const n = this.byAddress.get(address) ?? 0;
    if (this.overall > 0 && this.total >= this.overall) {
      return { code: 'too-many-connections', message: `the server has its maximum of ${this.overall} connections; try again later` };
    }
    if (this.perAddress > 0 && n >= this.perAddress) {
      return { code: 'too-many-connections', message: `at most ${this.perAddress} connections per address (server option --max-connections-per-ip)` };
    }
    this.byAddress.set(address, n + 1);
    this.total++;
    return undefined;
  }

  close(address: string): void {
    const n = this.byAddress.get(address);
    if (n === undefined) return;
    if (n <= 1) this.byAddress.delete(address);
    else this.byAddress.set(address, n - 1);
    this.total--;
  }

  get openCount(): number {
    return this.total;
  }

  get addresses(): number {
    return this.byAddress.size;
  }
}

/** At most `max` holders at once; `tryAcquire` gives a release function or undefined. */
export class Slots {
  private used = 0;

  constructor(private readonly max: number) {}

  tryAcquire(): (() => void) | undefined {
    if (this.max > 0 && this.used >= this.max) return undefined;
    this.used++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used--;
    };
  }

  get inUse(): number {
    return this.used;
  }
}
