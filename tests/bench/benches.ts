import { churn } from './churn.ts';
import type { Bench } from './common.ts';
import { delivery } from './delivery.ts';
import { encoding } from './encoding.ts';
import { failover } from './failover.ts';
import { pool } from './pool.ts';
import { verify } from './verify.ts';
import { webcodecs } from './webcodecs.ts';

export const BENCHES: Record<string, { title: string; run: Bench; maxRuns?: number }> = {
  encoding: { title: 'a/d. Encoding', run: encoding },
  pool: { title: 'b/c. Pool', run: pool },
  delivery: { title: 'e. Delivery', run: delivery },
  failover: { title: 'f. Failover', run: failover },
  // A 100 s simulation whose figures barely move between runs (3 runs: 0 lost each, busiest holder 131 req/s each).
  churn: { title: 'g. Churn (simulated pool)', run: churn, maxRuns: 1 },
  webcodecs: { title: 'h. WebCodecs H.264', run: webcodecs },
  verify: { title: 'i. Picture verification', run: verify, maxRuns: 1 },
};
