/**
 * What the server's edge (route modules, the WebSocket module) is handed by
 * the composition root (server.ts): the parts it built, once. Owns one piece
 * of state: the refusal counters every access check and limit adds to.
 */
import type { ServerConfig } from './config.ts';
import type { ContentStore } from './ContentStore.ts';
import type { ShardCache } from './ShardCache.ts';
import type { ShardIntake } from './ShardIntake.ts';
import type { PoolManager } from './PoolManager.ts';
import type { AdminToken } from './auth.ts';
import type { ClientSlots, Slots } from './limits.ts';
import type { Mezzanines } from './Mezzanine.ts';

/** Requests refused by a limit or an access check, by kind (for tests and /metrics). */
export type Refusals = Record<'rateLimited' | 'badOrigin' | 'tooManyConnections' | 'tooManyUploads' | 'badJoinToken' | 'slowReaders' | 'busySlices', number>;

export function newRefusals(): Refusals {
  return { rateLimited: 0, badOrigin: 0, tooManyConnections: 0, tooManyUploads: 0, badJoinToken: 0, slowReaders: 0, busySlices: 0 };
}

export type Log = (...a: unknown[]) => void;

export interface EdgeContext {
  config: ServerConfig;
  store: ContentStore;
  cache: ShardCache;
  intake: ShardIntake;
  pool: PoolManager;
  /** Sources waiting for volunteers' mezzanine. */
  mezzanines: Mezzanines;
  admin: AdminToken;
  /** Uploads received or probed at once (--max-concurrent-uploads). */
  uploads: Slots;
  /** Shard upload bodies being read, per client address and in all (--max-shard-uploads-per-ip, --max-concurrent-shard-uploads). */
  shardUploads: ClientSlots;
  /** Source slices being built at once (--max-concurrent-slices). */
  slices: Slots;
  refusals: Refusals;
  log: Log;
}
