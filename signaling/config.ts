/**
 * The server's config: one zod schema holds every tunable with its default and
 * description, and --help, the flags and the environment variables are derived
 * from it (src/shared/configSchema.ts). Each option can be set by a flag
 * (`--heartbeat-timeout-ms 5000`) or an environment variable
 * (`SHARDCAST_HEARTBEAT_TIMEOUT_MS=5000`); PORT and DATA_DIR are also read
 * without the prefix. README's "Server options" and "Pool policies" list the
 * documented ones (tests/server/options.test.ts checks --help against them).
 */
import path from 'node:path';
import { z } from 'zod';
import { ConfigError, ConfigSchema } from '../src/shared/configSchema.ts';
import { iceServerSchema } from '../src/shared/protocol.ts';
import { parseConfigFlags } from './configFlags.ts';

export type IceServer = z.output<typeof iceServerSchema>;

/** A non-negative number option (every numeric server option is a count, a size, a duration or a rate). */
const num = (def: number, description: string) => z.number().nonnegative().default(def).describe(description);
const bool = (def: boolean, description: string) => z.boolean().default(def).describe(description);
const str = (def: string, description: string) => z.string().default(def).describe(description);

const serverConfigSchema = z.object({
  port: num(8080, 'TCP port for HTTP and WebSocket. 0 picks a free one (tests).'),
  host: str('0.0.0.0', 'Interface to bind.'),
  dataDir: str(path.resolve('data'), 'Where contents, shard maps, the shard registry and the cache live.'),
  distDir: str(path.resolve('dist'), 'Directory of the built web app (vite build output).'),
  maxUploadBytes: num(2 * 2 ** 30, 'Largest accepted upload, bytes.'),
  mezzanineMaxSourceBytes: num(
    256 * 2 ** 20,
    'Largest source with a track only volunteers decode (Theora, MPEG-2 video, FLAC in Ogg) that is normalised by them, bytes: each of two volunteers fetches it whole into its tab; larger ones get 415.',
  ),
  mezzanineMaxBytes: num(512 * 2 ** 20, 'Largest mezzanine a volunteer may upload, bytes; larger uploads get 413 too-large.'),
  mezzanineDeadlineMs: num(30 * 60_000, 'Time a volunteer has for a mezzanine job before its token expires and another volunteer may take it, ms.'),
  heartbeatMs: num(2000, 'Expected heartbeat period of a tab, ms (sent to tabs in `welcome`).'),
  heartbeatTimeoutMs: num(6000, 'A tab that sends nothing for this long is lost and its work re-queued, ms.'),
  restartGraceMs: num(
    6000,
    'After a start, encoders have this long to reconnect and announce what they hold; then every accepted shard that no encoder holds and the cache lacks is encoded again, ms.',
  ),
  jobSeconds: num(3, 'Target length of one encoding job (a run of shards), seconds.'),
  jobMaxSeconds: num(5, 'Jobs never exceed this length, seconds.'),
  audioJobSeconds: num(30, 'Audio is encoded in long runs to avoid priming gaps; runs of this length, seconds (whole content if shorter than twice this).'),
  jobDeadlineMsPerSecond: num(20_000, 'Time an encoder gets for a job, per second of content, before it is reissued, ms.'),
  jobDeadlineMinMs: num(30_000, "Floor for a job's deadline, ms."),
  maxJobAttempts: num(4, 'Tries per job before its shards are marked failed.'),
  iceServers: z
    .array(iceServerSchema)
    .default([])
    .meta({ expects: 'a JSON array such as [{"urls":"stun:stun.example.org"}]' })
    .describe('ICE servers handed to tabs (STUN/TURN), as JSON; empty works on one LAN/host.'),
  cacheEnabled: bool(true, 'Ask encoders to upload finished shards to the server cache.'),
  snapshotDelayMs: num(500, 'Debounce for rewriting shard-map snapshots, ms (accepted shards are logged at once regardless).'),
  log: bool(true, 'Log to stdout.'),

  // Pool policies (signaling/policy/*): health, scheduling, replication, pre-encoding.
  maxJobsPerEncoder: num(2, 'Jobs in flight per encoder at most (an encoder may ask for fewer).'),
  quarantineAfterFailures: num(3, 'Consecutive failed or timed-out jobs that put an encoder in quarantine.'),
  quarantineAfterInvalid: num(2, 'Shards refused as invalid (bad structure, reported by viewers) that put an encoder in quarantine.'),
  quarantineMs: num(120_000, 'How long a quarantine lasts, ms; an encoder in quarantine gets no work and is not offered to viewers.'),
  liveWindowSeconds: num(10, "Shards this far ahead of a viewer's playhead are live work, scheduled first, seconds."),
  startSeconds: num(5, 'The first seconds of every content come next (viewers start there), seconds.'),
  demandHalfLifeMs: num(10_000, 'Half-life of the per-shard request rate and of view counts, ms.'),
  viewerActiveMs: num(5_000, 'A viewer is active (its playhead counts) for this long after its last locate, ms.'),
  replicateAboveRate: num(3, 'A shard requested more often than this (requests/s) gets extra replicas.'),
  perReplicaRate: num(3, 'Requests/s one replica is expected to serve: a hot shard wants rate / this replicas.'),
  maxReplicas: num(4, 'Replicas of one shard at most (original holders included).'),
  busyServing: num(3, 'A holder serving this many transfers at once is busy: its shards want one more replica.'),
  releaseBelowRate: num(0.5, 'Extra replicas of shards whose rate stays below this (requests/s) for --release-after-ms are released.'),
  releaseAfterMs: num(30_000, 'See --release-below-rate, ms.'),
  replicateTimeoutMs: num(15_000, 'A replication not confirmed in this long is given up, ms.'),

  // Verification (signaling/policy/Trust.ts): structure checks before acceptance, cross-checks between encoders.
  verifySampleRate: num(
    0.1,
    "Share of a trusted encoder's jobs that a second encoder (same engine and build) encodes again to compare hashes (the floor of the adaptive rate).",
  ),
  verifyNewEncoderJobs: num(3, "A new encoder's first jobs, this many, are all cross-checked; after a failed check it starts over."),
  verifyTrustGrowth: num(
    0.5,
    'How fast the check rate falls with trust: rate = 1 / (1 + growth * checks passed beyond the first ones), never below --verify-sample-rate.',
  ),
  verifyQueueMax: num(1000, 'Cross-checks waiting for a verifier at most; beyond this the oldest are dropped and their shards counted unverifiable.'),
  // Only engines shown to give the same bytes for the same job (ffmpeg.wasm: tests/e2e/determinism.test.ts).
  verifyEngines: str(
    'ffmpeg-wasm',
    'Engines whose output is cross-checked by hash, comma-separated names (the part of the engine string before "@"); shards of other engines are accepted after the structure check and counted unverifiable.',
  ),

  // Picture verification (signaling/pool/Verification.ts) for engines whose bytes differ run to run.
  verifyPictureEngines: str(
    'webcodecs',
    'Engines whose shards another tab verifies by decoding them and the source (PSNR, frame count, frame times) instead of by hash, comma-separated names; sampled like cross-checks (--verify-sample-rate, --verify-new-encoder-jobs).',
  ),
  // Measured with tests/bench/verify.ts: honest shards of both engines score well above, wrong pictures far below (README, "Verification").
  verifyMinPsnrDb: num(25, 'Mean luma PSNR against the source (dB) below which a verifier fails a shard.'),
  // Two roundings at a 1 kHz timescale (the coarsest MP4 writers use) are 1 ms; one frame at 60 fps is 16.7 ms.
  verifyMaxTimeErrorSeconds: num(0.002, "Largest difference between a frame's time in the shard and in the source a verifier passes, seconds."),
  verifyTimeoutMs: num(120_000, 'How long a verifier has to answer a verification before another is asked, ms.'),
  verifyMaxAttempts: num(3, 'Verifiers asked in turn for one stage of a verification before its shards are counted unverifiable.'),
  reportsPerMinute: num(
    6,
    "Reports about a holder (report-peer) one peer may have counted per minute. A report never convicts: it puts that holder last in the reporter's own holder lists and may have the shard encoded again (signaling/pool/Reports.ts).",
  ),

  // Access control (signaling/auth.ts). See README "Security model".
  adminToken: str(
    '',
    'Bearer token for publishing, deleting and other admin calls. Empty: read DATA_DIR/admin-token, generating it (mode 0600) on first start.',
  ),
  joinToken: str('', 'Token tabs must send in hello (and encoders with source-slice requests) to join. Empty: anyone may join.'),
  viewerToken: str(
    '',
    'Private content: every content read (list, maps, cached shards, export.mp4, source slices, HLS/DASH, watching over the pool) needs this token (or the join or admin token), as ?token= or a bearer token. Needs --join-token. Empty: content reads are public.',
  ),
  allowedOrigins: str(
    '',
    "Origins allowed to open the WebSocket, comma-separated. Empty: only the origin whose host equals the request's Host header. Requests without Origin (non-browser clients) are allowed.",
  ),
  corsOrigins: str('', 'Origins that get CORS headers on the HTTP API, comma-separated ("*" for any). Empty: no CORS (same origin only).'),
  trustProxy: bool(
    false,
    "Take the client address from the last X-Forwarded-For entry (set when behind a reverse proxy, else every client shares the proxy's address).",
  ),

  // Limits (signaling/limits.ts): every one answers with an error code, never a crash.
  wsMessagesPerSecond: num(100, 'WebSocket messages per second per connection, sustained (token bucket rate).'),
  wsMessageBurst: num(400, 'WebSocket messages a connection may send in a burst (token bucket size).'),
  wsRateLimitedCloseAfter: num(200, 'A connection whose messages keep being refused for rate is closed (1008) after this many refusals.'),
  maxConnectionsPerIp: num(64, 'Open WebSocket connections per client address; 0 = no limit.'),
  maxConnections: num(10_000, 'Open WebSocket connections in total; 0 = no limit.'),
  maxConcurrentUploads: num(4, 'Uploads (POST /api/contents) being received or probed at once; more get 429.'),
  maxHoldingsPerEncoder: num(50_000, 'Shards one encoder may hold in the holders index (announced, accepted or replicated); more are not indexed.'),
  exportMaxBytes: num(
    1024 * 2 ** 20,
    'Largest total of cached shard bytes one export (GET /api/contents/:id/export.mp4, built in memory) may use; more get 422 export-too-large.',
  ),
  exportMaxConcurrent: num(2, 'Distinct exports built at once; more get 503 busy with Retry-After.'),
  hlsMaxConcurrentBuilds: num(
    4,
    'HLS/DASH init and media segments (GET /api/contents/:id/hls/..., each built in memory from about 2 s of cached shards) built at once; more get 503 busy with Retry-After.',
  ),
  maxShardBytes: num(
    16 * 2 ** 20,
    'Largest shard upload (PUT /api/contents/:id/shards/...), bytes: refused by Content-Length before reading, or once the body passes it.',
  ),
  maxConcurrentShardUploads: num(16, 'Shard upload bodies being read at once, in all; more get 429 too-many-uploads before their body is read.'),
  maxShardUploadsPerIp: num(8, 'Shard upload bodies being read at once per client address; more get 429 too-many-uploads.'),
  shardUploadTimeoutMs: num(
    120_000,
    'Time a shard upload body may take to arrive, ms (16 MiB at ~1 Mbit/s); slower ones get 408 body-timeout and the connection is closed.',
  ),
  maxConcurrentSlices: num(4, 'Source slices (GET /api/contents/:id/source) being built at once; more get 503 busy with Retry-After.'),
  maxSliceBytes: num(64 * 2 ** 20, 'Largest source slice, bytes of media packets: a range holding more gets 422 slice-too-large (ask for a shorter range).'),
  wsMaxBufferedBytes: num(
    4 * 2 ** 20,
    'Bytes the server may have queued for one WebSocket that the client has not read; past it the connection is closed (1013 slow reader) instead of queueing more.',
  ),

  testHooks: z
    .object({
      verifyShardBytes: bool(
        true,
        "Encoders upload every shard (HTTP PUT with the job's upload token) before reporting it, and the server checks its structure, hash and size before accepting it. false: shards are accepted on the encoder's word.",
      ),
      scheduleUncheckedEngines: bool(
        false,
        'Encoders may be given jobs for engines no check covers (in neither --verify-engines nor --verify-picture-engines), as the fake encoders of tests and the simulator are. false: such engines are ignored, so shards are only ever made by engines the pool can check.',
      ),
    })
    .prefault({})
    .describe('Test hooks (for tests and the churn simulator only, whose fake encoders carry no bytes)'),
});

export type ServerConfig = z.output<typeof serverConfigSchema>;

/** What a caller may set on top of flags and environment: any option, test hooks one by one. */
export type ServerConfigOverrides = Partial<Omit<ServerConfig, 'testHooks'>> & { testHooks?: Partial<ServerConfig['testHooks']> };

export const SERVER_CONFIG = new ConfigSchema(serverConfigSchema, { envPrefix: 'SHARDCAST_', envAliases: { port: ['PORT'], dataDir: ['DATA_DIR'] } });

export const DEFAULT_CONFIG: ServerConfig = SERVER_CONFIG.defaults();

/**
 * Builds the config from defaults, then the environment, then flags (argv
 * without the program name), then `overrides` (not validated: tests' typed values).
 * @throws ConfigError for an unknown flag or a bad value (naming the flag or variable), or
 *   heartbeatTimeoutMs not above heartbeatMs.
 */
export function loadConfig(argv: readonly string[] = [], env: NodeJS.ProcessEnv = process.env, overrides: ServerConfigOverrides = {}): ServerConfig {
  const fromEnv = SERVER_CONFIG.fromEnv(env);
  const { assignments } = parseConfigFlags(SERVER_CONFIG, argv);
  const cfg = SERVER_CONFIG.apply(DEFAULT_CONFIG, [...fromEnv, ...assignments]);
  const { testHooks, ...rest } = overrides;
  Object.assign(cfg, rest);
  Object.assign(cfg.testHooks, testHooks);
  cfg.dataDir = path.resolve(cfg.dataDir);
  cfg.distDir = path.resolve(cfg.distDir);
  if (cfg.heartbeatTimeoutMs <= cfg.heartbeatMs) {
    throw new ConfigError(
      `--heartbeat-timeout-ms (${cfg.heartbeatTimeoutMs}) must be larger than --heartbeat-ms (${cfg.heartbeatMs}): a tab would be dropped between two heartbeats`,
    );
  }
  if (cfg.viewerToken && !cfg.joinToken) {
    throw new ConfigError(
      '--viewer-token needs --join-token too: without one any tab may join as an encoder and is handed the source slices and shards it encodes, so the content would not be private',
    );
  }
  return cfg;
}

/** Lines for `--help`: every option with its environment variable, default and description. */
export function configHelp(): string {
  return SERVER_CONFIG.help();
}
