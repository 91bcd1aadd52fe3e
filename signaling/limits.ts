/**
 * Small, allocation-bounded limiters: a token bucket for message rates, a
 * per-address connection counter, a counter of concurrent uploads and one of
 * concurrent request bodies per client address. Every refusal carries a
 * stable code so clients can tell limits from errors.
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

  /** Which cap one more connection from `address` would pass, if any (0 means no limit). */
  full(address: string): 'overall' | 'per-address' | undefined {
    if (this.overall > 0 && this.total >= this.overall) return 'overall';
    if (this.perAddress > 0 && (this.byAddress.get(address) ?? 0) >= this.perAddress) return 'per-address';
    return undefined;
  }

  /** Counts a new connection, or says why it is refused (0 means no limit). */
  open(address: string): ConnectionRefusal | undefined {
    const full = this.full(address);
    if (full === 'overall') {
      return { code: 'too-many-connections', message: `the server has its maximum of ${this.overall} connections; try again later` };
    }
    if (full === 'per-address') {
      return { code: 'too-many-connections', message: `at most ${this.perAddress} connections per address (server option --max-connections-per-ip)` };
    }
    this.byAddress.set(address, (this.byAddress.get(address) ?? 0) + 1);
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

/**
 * Request bodies being read at once, per client address and in all (shard
 * uploads): a client holding its slots with slow bodies blocks only itself
 * until the overall cap. The same bookkeeping as connections.
 */
export class ClientSlots {
  private readonly counter: ConnectionCounter;

  constructor(
    perAddress: number,
    overall: number,
    /** Names the options in refusal messages, e.g. `--max-shard-uploads-per-ip`. */
    private readonly flags: { perAddress: string; overall: string },
  ) {
    this.counter = new ConnectionCounter(perAddress, overall);
  }

  /** Why one more body from `address` would be refused (code too-many-uploads), or undefined. */
  refusal(address: string): { code: 'too-many-uploads'; message: string } | undefined {
    const full = this.counter.full(address);
    if (!full) return undefined;
    const flag = full === 'overall' ? this.flags.overall : this.flags.perAddress;
    const who = full === 'overall' ? 'the server is' : 'you are';
    return { code: 'too-many-uploads', message: `${who} already sending as many uploads as allowed (server option ${flag}); retry when one finishes` };
  }

  /** Takes a slot for `address`: a release function (idempotent), or undefined when full. */
  tryAcquire(address: string): (() => void) | undefined {
    if (this.counter.open(address)) return undefined;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.counter.close(address);
    };
  }

  get inUse(): number {
    return this.counter.openCount;
  }
}
