/**
 * Every tunable of the server, with its default, in one place. Each can be set
 * by a command-line flag (`--heartbeat-timeout-ms 5000`) or an environment
 * variable (`SHARDCAST_HEARTBEAT_TIMEOUT_MS=5000`); PORT and DATA_DIR are also
 * read without the prefix.
 */
import path from 'node:path';

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface ServerConfig {
  /** TCP port for HTTP and WebSocket. 0 picks a free one (tests). */
  port: number;
  /** Interface to bind. */
  host: string;
  /** Where contents, shard maps, the shard registry and the cache live. */
  dataDir: string;
  /** Directory of the built web app (vite build output). */
  distDir: string;
  /** Largest accepted upload, bytes. */
  maxUploadBytes: number;
  /** Expected heartbeat period of a tab, ms (sent to tabs in `welcome`). */
  heartbeatMs: number;
  /** A tab that sends nothing for this long is lost and its work re-queued, ms. */
  heartbeatTimeoutMs: number;
  /** Target length of one encoding job (a run of shards), seconds. */
  jobSeconds: number;
  /** Jobs never exceed this length, seconds. */
  jobMaxSeconds: number;
  /** Audio is encoded in long runs to avoid priming gaps; runs of this length, seconds (whole content if shorter than twice this). */
  audioJobSeconds: number;
  /** Time an encoder gets for a job, per second of content, before it is reissued, ms. */
  jobDeadlineMsPerSecond: number;
  /** Floor for a job's deadline, ms. */
  jobDeadlineMinMs: number;
  /** Tries per job before its shards are marked failed. */
  maxJobAttempts: number;
  /** ICE servers handed to tabs (STUN/TURN); empty works on one LAN/host. */
  iceServers: IceServer[];
  /** Ask encoders to upload finished shards to the server cache. */
  cacheEnabled: boolean;
  /** Debounce for rewriting shard-map snapshots, ms (accepted shards are logged at once regardless). */
  snapshotDelayMs: number;
  /** Log to stdout. */
  log: boolean;

  // Pool policies (signaling/policy/*): health, scheduling, replication, pre-encoding.
  /** Jobs in flight per encoder at most (an encoder may ask for fewer). */
  maxJobsPerEncoder: number;
  /** Consecutive failed or timed-out jobs that put an encoder in quarantine. */
  quarantineAfterFailures: number;
  /** Shards refused as invalid (bad structure, reported by viewers) that put an encoder in quarantine. */
  quarantineAfterInvalid: number;
  /** How long a quarantine lasts, ms; an encoder in quarantine gets no work and is not offered to viewers. */
  quarantineMs: number;
  /** Shards this far ahead of a viewer's playhead are live work, scheduled first, seconds. */
  liveWindowSeconds: number;
  /** The first seconds of every content come next (viewers start there), seconds. */
  startSeconds: number;
  /** Half-life of the per-shard request rate and of view counts, ms. */
  demandHalfLifeMs: number;
  /** A viewer is active (its playhead counts) for this long after its last locate, ms. */
  viewerActiveMs: number;
  /** A shard requested more often than this (requests/s) gets extra replicas. */
  replicateAboveRate: number;
  /** Requests/s one replica is expected to serve: a hot shard wants rate / this replicas. */
  perReplicaRate: number;
  /** Replicas of one shard at most (original holders included). */
  maxReplicas: number;
  /** A holder serving this many transfers at once is busy: its shards want one more replica. */
  busyServing: number;
  /** Extra replicas of shards whose rate stays below this (requests/s) ... */
  releaseBelowRate: number;
  /** ... for this long are released, ms. */
  releaseAfterMs: number;
  /** A replication not confirmed in this long is given up, ms. */
  replicateTimeoutMs: number;
  /** Background (pre-encoding) jobs are given out only while at least this share of encoders is idle and no live work waits. */
  idleShareForBackground: number;

  // Verification (signaling/policy/Trust.ts): structure checks before acceptance, cross-checks between encoders.
  /**
   * Encoders upload every shard (HTTP PUT with the job's upload token) before
   * reporting it, and the server checks its structure, hash and size before
   * accepting it. Off only in the churn simulator, whose fake encoders carry no bytes.
   */
  verifyShardBytes: boolean;
  /** Share of a trusted encoder's jobs that a second encoder (same engine and build) encodes again to compare hashes (the floor of the adaptive rate). */
  verifySampleRate: number;
  /** A new encoder's first jobs, this many, are all cross-checked; after a failed check it starts over. */
  verifyNewEncoderJobs: number;
  /** How fast the check rate falls with trust: rate = 1 / (1 + growth * checks passed beyond the first ones), never below verifySampleRate. */
  verifyTrustGrowth: number;
  /** Cross-checks waiting for a verifier at most; beyond this the oldest are dropped and their shards counted unverifiable. */
  verifyQueueMax: number;
  /**
   * Engines whose output is cross-checked by hash, comma-separated names (the part
   * of the engine string before "@"): only engines shown to give the same bytes
   * for the same job (ffmpeg.wasm: tests/e2e/determinism.test.ts). Shards of other
   * engines are accepted after the structure check and counted unverifiable.
   */
  verifyEngines: string;

  // Access control (signaling/auth.ts). See README "Security model".
  /** Bearer token for publishing, deleting and other admin calls. Empty: read DATA_DIR/admin-token, generating it (mode 0600) on first start. */
  adminToken: string;
  /** Token tabs must send in hello (and encoders with source-slice requests) to join. Empty: anyone may join. */
  joinToken: string;
  /** Origins allowed to open the WebSocket, comma-separated. Empty: only the origin whose host equals the request's Host header. Requests without Origin (non-browser clients) are allowed. */
  allowedOrigins: string;
  /** Origins that get CORS headers on the HTTP API, comma-separated ("*" for any). Empty: no CORS (same origin only). */
  corsOrigins: string;
  /** Take the client address from the last X-Forwarded-For entry (set when behind a reverse proxy, else every client shares the proxy's address). */
  trustProxy: boolean;

  // Limits (signaling/limits.ts): every one answers with an error code, never a crash.
  /** WebSocket messages per second per connection, sustained (token bucket rate). */
  wsMessagesPerSecond: number;
  /** WebSocket messages a connection may send in a burst (token bucket size). */
  wsMessageBurst: number;
  /** A connection whose messages keep being refused for rate is closed (1008) after this many refusals. */
  wsRateLimitedCloseAfter: number;
  /** Open WebSocket connections per client address; 0 = no limit. */
  maxConnectionsPerIp: number;
  /** Open WebSocket connections in total; 0 = no limit. */
  maxConnections: number;
  /** Uploads (POST /api/contents) being received or probed at once; more get 429. */
  maxConcurrentUploads: number;
  /** Shards one encoder may hold in the holders index (announced, accepted or replicated); more are not indexed. */
  maxHoldingsPerEncoder: number;
  /** Largest total of cached shard bytes one export (GET /api/contents/:id/export.mp4, built in memory) may use; more get 422 export-too-large. */
  exportMaxBytes: number;
  /** Distinct exports built at once; more get 503 busy with Retry-After. */
  exportMaxConcurrent: number;
}

export const DEFAULT_CONFIG: ServerConfig = {
  port: 8080,
  host: '0.0.0.0',
  dataDir: path.resolve('data'),
  distDir: path.resolve('dist'),
  maxUploadBytes: 2 * 2 ** 30,
  heartbeatMs: 2000,
  heartbeatTimeoutMs: 6000,
  jobSeconds: 3,
  jobMaxSeconds: 5,
  audioJobSeconds: 30,
  jobDeadlineMsPerSecond: 20_000,
  jobDeadlineMinMs: 30_000,
  maxJobAttempts: 4,
  iceServers: [],
  cacheEnabled: true,
  snapshotDelayMs: 500,
  log: true,
  maxJobsPerEncoder: 2,
  quarantineAfterFailures: 3,
  quarantineAfterInvalid: 2,
  quarantineMs: 120_000,
  liveWindowSeconds: 10,
  startSeconds: 5,
  demandHalfLifeMs: 10_000,
  viewerActiveMs: 5_000,
  replicateAboveRate: 3,
  perReplicaRate: 3,
  maxReplicas: 4,
  busyServing: 3,
  releaseBelowRate: 0.5,
  releaseAfterMs: 30_000,
  replicateTimeoutMs: 15_000,
  idleShareForBackground: 0.25,
  verifyShardBytes: true,
  verifySampleRate: 0.1,
  verifyNewEncoderJobs: 3,
  verifyTrustGrowth: 0.5,
  verifyQueueMax: 1000,
  verifyEngines: 'ffmpeg-wasm',
  adminToken: '',
  joinToken: '',
  allowedOrigins: '',
  corsOrigins: '',
  trustProxy: false,
  wsMessagesPerSecond: 100,
  wsMessageBurst: 400,
  wsRateLimitedCloseAfter: 200,
  maxConnectionsPerIp: 64,
  maxConnections: 10_000,
  maxConcurrentUploads: 4,
  maxHoldingsPerEncoder: 50_000,
  exportMaxBytes: 1024 * 2 ** 20,
  exportMaxConcurrent: 2,
};

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (k: string) => `SHARDCAST_${kebab(k).replace(/-/g, '_').toUpperCase()}`;

function coerce(key: keyof ServerConfig, raw: string): ServerConfig[keyof ServerConfig] {
  const def = DEFAULT_CONFIG[key];
  if (typeof def === 'number') {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`config ${key}: expected a non-negative number, got "${raw}"`);
    return n;
  }
  if (typeof def === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new Error(`config ${key}: expected true or false, got "${raw}"`);
  }
  if (Array.isArray(def)) {
    try {
      const v: unknown = JSON.parse(raw);
      if (!Array.isArray(v)) throw new Error('not an array');
      return v as IceServer[];
    } catch {
      throw new Error(`config ${key}: expected a JSON array such as [{"urls":"stun:stun.example.org"}], got "${raw}"`);
    }
  }
  return raw;
}

/** Builds the config from defaults, then the environment, then flags, then `overrides`. */
export function loadConfig(
  argv: readonly string[] = [],
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<ServerConfig> = {},
): ServerConfig {
  const cfg: ServerConfig = { ...DEFAULT_CONFIG };
  const set = <K extends keyof ServerConfig>(k: K, raw: string) => {
    (cfg as unknown as Record<string, unknown>)[k] = coerce(k, raw);
  };
  if (env.PORT) set('port', env.PORT);
  if (env.DATA_DIR) set('dataDir', env.DATA_DIR);
  for (const k of Object.keys(DEFAULT_CONFIG) as (keyof ServerConfig)[]) {
    const v = env[envName(k)];
    if (v !== undefined && v !== '') set(k, v);
  }
  const byFlag = new Map((Object.keys(DEFAULT_CONFIG) as (keyof ServerConfig)[]).map((k) => [`--${kebab(k)}`, k]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const k = byFlag.get(flag);
    if (!k) throw new Error(`unknown option ${flag}; options: ${[...byFlag.keys()].join(' ')}`);
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`option ${flag} needs a value`);
    set(k, v);
  }
  Object.assign(cfg, overrides);
  cfg.dataDir = path.resolve(cfg.dataDir);
  cfg.distDir = path.resolve(cfg.distDir);
  if (cfg.heartbeatTimeoutMs <= cfg.heartbeatMs) {
    throw new Error(`heartbeatTimeoutMs (${cfg.heartbeatTimeoutMs}) must be larger than heartbeatMs (${cfg.heartbeatMs})`);
  }
  return cfg;
}

/** Lines for `--help`: every option with its environment variable and default. */
export function configHelp(): string {
  return (Object.keys(DEFAULT_CONFIG) as (keyof ServerConfig)[])
    .map((k) => `  --${kebab(k).padEnd(28)} ${envName(k).padEnd(40)} default ${JSON.stringify(DEFAULT_CONFIG[k])}`)
    .join('\n');
}
