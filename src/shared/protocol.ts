/**
 * The WebSocket protocol between tabs (encoders, viewers) and the pool manager.
 * One schema module for both sides: the server validates every message it
 * receives with `parseClientMessage`, and the browser validates what the server
 * sends with `parseServerMessage`.
 *
 * Messages are JSON objects with a `type`. Shard bytes never travel here: they
 * go over WebRTC data channels (see ./wire.ts) or HTTP.
 */
import { z } from 'zod';
import { renditionIdSchema, sha256Schema, videoSpecSchema, audioSpecSchema } from './shardMap.ts';
import { ERROR_CODES, type ErrorCode } from './errors.ts';

export const PROTOCOL_VERSION = 1;

/** Hard cap for one WebSocket message; larger frames are refused before parsing. */
export const MAX_MESSAGE_BYTES = 256 * 1024;

const id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, 'ids are letters, digits, _ and -');
const contentId = id;
const index = z.number().int().nonnegative().max(10_000_000);
const finite = z.number().finite();

export const shardKeySchema = z.object({ contentId, rendition: renditionIdSchema, index }).strict();

export const engineSchema = z
  .object({
    /** "ffmpeg-wasm", "webcodecs", ... */
    name: z.string().min(1).max(32),
    /**
     * The build its shards are made with: shard-ready's `engine` for them is "name@build"
     * (the name alone when absent), and the pool refuses any other (signaling/pool/EngineClaims.ts).
     */
    build: z.string().min(1).max(95).optional(),
    /** Codecs this engine can produce: "h264", "aac", "vp9", ... */
    codecs: z.array(z.string().min(1).max(16)).max(16),
    /** Measured by the join benchmark: seconds of 360p output per wall second. */
    speed: finite.nonnegative().max(10_000).optional(),
  })
  .strict();

export const capabilitiesSchema = z
  .object({
    engines: z.array(engineSchema).min(1).max(8),
    /** Jobs the tab will run at once. */
    maxJobs: z.number().int().min(1).max(8).default(1),
    /** Bytes of shards the tab is willing to hold. */
    storageBytes: z
      .number()
      .int()
      .nonnegative()
      .max(64 * 2 ** 30)
      .optional(),
  })
  .strict();

/** A shard's size in bytes, as encoders and holders report it: at most 256 MiB (a 0.5 s shard at any sane bitrate is far below). */
const shardSizeSchema = z
  .number()
  .int()
  .positive()
  .max(256 * 2 ** 20);

export const holdingSchema = z
  .object({
    key: shardKeySchema,
    sha256: sha256Schema,
    size: shardSizeSchema,
  })
  .strict();

/** Nesting depth of a JSON value, counted without recursion (a hostile value may nest 100 000 deep). */
function jsonDepth(v: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    deepest = Math.max(deepest, d);
    if (deepest > limit) return deepest;
    for (const c of Object.values(x)) stack.push([c, d + 1]);
  }
  return deepest;
}

/** SDP and ICE candidates nest 3 deep; the relay re-serialises the payload, which a deeper one could overflow. */
export const MAX_SIGNAL_DEPTH = 8;

/** Opaque WebRTC signalling payload (SDP or ICE candidate), relayed as is. */
const signalData = z
  .record(z.string(), z.unknown())
  .refine((d) => jsonDepth(d, MAX_SIGNAL_DEPTH) <= MAX_SIGNAL_DEPTH, `signal data nests deeper than ${MAX_SIGNAL_DEPTH} levels`);

/**
 * One shard as a verifier measured it against the source slice
 * (src/encoder/Verifier.ts): frames decoded, the mean luma PSNR over them
 * (dB; identical pictures give ffmpeg's "inf", sent as 100), and the largest
 * difference between a frame's time in the shard and in the source, both
 * rebased to the shard's first frame (seconds).
 */
export const verifyMeasureSchema = z
  .object({
    index,
    frames: z.number().int().nonnegative().max(100_000),
    psnr: finite.min(0).max(100),
    maxTimeError: finite.nonnegative().max(3600),
  })
  .strict();

// ---------------------------------------------------------------- client -> server

export const clientMessageSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('hello'),
      protocol: z.literal(PROTOCOL_VERSION),
      role: z.enum(['encoder', 'viewer']),
      /** A peer id from an earlier session, to keep the same identity across reconnects. */
      peerId: id.optional(),
      /** The secret the pool gave with that id in `welcome`: without it the id is not reused (ids are public on /api/pool). */
      resume: z.string().max(64).optional(),
      token: z.string().max(512).optional(),
      capabilities: capabilitiesSchema.optional(),
      /** Shards an encoder still holds (after a reload or reconnect). */
      holdings: z.array(holdingSchema).max(100_000).optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('heartbeat'),
      activeJobs: z.number().int().nonnegative().max(64).optional(),
      heldBytes: z.number().int().nonnegative().optional(),
      peers: z.number().int().nonnegative().max(10_000).optional(),
      /** Shard transfers being served right now: how busy this holder is. */
      serving: z.number().int().nonnegative().max(10_000).optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('job-progress'),
      jobId: id,
      /** 0..1 of the job. */
      progress: finite.min(0).max(1),
      fps: finite.nonnegative().max(100_000).optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('shard-ready'),
      jobId: id.optional(),
      key: shardKeySchema,
      sha256: sha256Schema,
      size: shardSizeSchema,
      /** The engine and its build that made the bytes ("name@build"): hashes are only comparable between identical builds. */
      engine: z.string().min(1).max(128).optional(),
      /** Audio: samples in the file before the shard's start (priming, pre-roll) and after its end. */
      lead: z.number().int().nonnegative().max(480_000).optional(),
      tail: z.number().int().nonnegative().max(480_000).optional(),
    })
    .strict(),
  z.object({ type: z.literal('job-done'), jobId: id }).strict(),
  z.object({ type: z.literal('job-failed'), jobId: id, reason: z.string().max(1000) }).strict(),
  z
    .object({
      type: z.literal('locate'),
      requestId: z.number().int().nonnegative(),
      contentId,
      /** First shard index of interest, and how many. */
      from: index.default(0),
      count: z.number().int().min(1).max(10_000).default(100),
      renditions: z.array(renditionIdSchema).max(16).optional(),
    })
    .strict(),
  z.object({ type: z.literal('signal'), to: id, data: signalData }).strict(),
  z.object({ type: z.literal('shard-dropped'), key: shardKeySchema }).strict(),
  /** An encoder whose engines changed (e.g. WebCodecs gave up): the pool schedules by the new list. */
  z.object({ type: z.literal('capabilities'), capabilities: capabilitiesSchema }).strict(),
  /** A replica the pool asked for (`replicate`) is now held, verified against the accepted hash. */
  z
    .object({
      type: z.literal('shard-stored'),
      key: shardKeySchema,
      sha256: sha256Schema,
      size: shardSizeSchema,
    })
    .strict(),
  z.object({ type: z.literal('replicate-failed'), key: shardKeySchema, reason: z.string().max(500) }).strict(),
  z.object({ type: z.literal('report-peer'), peerId: id, key: shardKeySchema, reason: z.string().max(200) }).strict(),
  /** What a verifier measured for each shard of a `verify` (in its order); the pool applies the threshold, not the tab. */
  z
    .object({
      type: z.literal('verify-result'),
      verifyId: id,
      shards: z.array(verifyMeasureSchema).min(1).max(1000),
    })
    .strict(),
  /** The verifier could not run the verification (no copy of the shard, a crash): another verifier gets it. */
  z.object({ type: z.literal('verify-failed'), verifyId: id, reason: z.string().max(1000) }).strict(),
]);

// ---------------------------------------------------------------- server -> client

export const jobShardSchema = z
  .object({
    index,
    start: finite,
    duration: finite.positive(),
    frames: z.number().int().positive(),
    firstFrame: z.number().int().nonnegative(),
    /** Audio jobs: exact placement from the map. */
    samples: z.number().int().positive().optional(),
  })
  .strict();

export const jobSchema = z
  .object({
    id,
    contentId,
    rendition: renditionIdSchema,
    kind: z.enum(['video', 'audio']),
    video: videoSpecSchema.optional(),
    /**
     * Video jobs: clockwise rotation (degrees) to apply to the source's pixels,
     * from its display matrix (probe). `video.width/height` are the rotated size.
     * The slice carries no display matrix, so this is the one authority. Absent: 0.
     */
    rotation: z.union([z.literal(90), z.literal(180), z.literal(270)]).optional(),
    audio: audioSpecSchema.optional(),
    shards: z.array(jobShardSchema).min(1),
    /** Where to GET the job's source slice (a stream-copy remux from the previous key frame). */
    sourceUrl: z.string().max(2048),
    /** Content-time range the job covers. */
    start: finite,
    end: finite,
    /** Epoch ms after which the pool may give the job to someone else. */
    deadline: z.number().int(),
    /**
     * Whether to upload each shard's bytes before its shard-ready: PUT
     * /api/contents/:id/shards/:rendition/:index with `Authorization: Bearer
     * <uploadToken>` (audio: ?lead=&tail=). The server checks structure, hash and
     * size and accepts only what it checked (and keeps it in its cache when on).
     */
    upload: z.boolean(),
    /** Names this job in uploads; only the encoder it was sent to knows it. */
    uploadToken: z.string().min(16).max(64).optional(),
    /** Which of the encoder's engines (a capabilities.engines name) the pool chose for this job. */
    engine: z.string().min(1).max(32).optional(),
    /** Audio jobs: extra AAC packets to encode before the run's start and after its end, for the viewer to trim where runs meet. */
    leadPackets: z.number().int().nonnegative().max(100).optional(),
    tailPackets: z.number().int().nonnegative().max(100).optional(),
  })
  .strict();

export const holderEntrySchema = z
  .object({
    index,
    rendition: renditionIdSchema,
    sha256: sha256Schema.optional(),
    peers: z.array(id),
    /** True when the server's cache has the shard (the last resort). */
    cached: z.boolean(),
  })
  .strict();

/** One STUN/TURN server as tabs get it in `welcome` (the server's --ice-servers entries). */
export const iceServerSchema = z.object({
  urls: z.union([z.string(), z.array(z.string())]),
  username: z.string().optional(),
  credential: z.string().optional(),
});

export const serverMessageSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('welcome'),
      protocol: z.literal(PROTOCOL_VERSION),
      peerId: id,
      /** Proves this id on a reconnect (hello.resume). */
      resume: z.string().max(64),
      heartbeatMs: z.number().int().positive(),
      iceServers: z.array(iceServerSchema),
    })
    .strict(),
  z.object({ type: z.literal('job'), job: jobSchema }).strict(),
  z.object({ type: z.literal('job-cancel'), jobId: id, reason: z.string() }).strict(),
  z.object({ type: z.literal('shard-accepted'), key: shardKeySchema, sha256: sha256Schema }).strict(),
  z.object({ type: z.literal('shard-rejected'), key: shardKeySchema, reason: z.string() }).strict(),
  z.object({ type: z.literal('holders'), requestId: z.number().int().nonnegative(), contentId, shards: z.array(holderEntrySchema) }).strict(),
  z.object({ type: z.literal('signal'), from: id, data: signalData }).strict(),
  /**
   * Copy a shard and hold it: from one of `from` (peer ids, over WebRTC), or
   * failing them from the server cache when `cached`. Verify against `sha256`,
   * then answer `shard-stored` (or `replicate-failed`).
   */
  z
    .object({
      type: z.literal('replicate'),
      key: shardKeySchema,
      sha256: sha256Schema,
      size: z.number().int().positive(),
      from: z.array(id).max(16),
      cached: z.boolean(),
    })
    .strict(),
  /** Drop this replica: demand has cooled and the pool has enough copies. */
  z.object({ type: z.literal('release'), key: shardKeySchema, reason: z.string() }).strict(),
  /**
   * Verify accepted shards made by another encoder whose engine is not byte
   * reproducible: fetch each shard (from one of `from` over WebRTC, else the
   * server cache when `cached`; checked against its `sha256`) and the job's
   * source slice, decode both, and answer `verify-result` with what was
   * measured, or `verify-failed`, before `deadline` (epoch ms).
   */
  z
    .object({
      type: z.literal('verify'),
      verifyId: id,
      /** The job the shards were made for (without an upload token): rendition, frames, times, source slice. */
      job: jobSchema,
      shards: z.array(z.object({ index, sha256: sha256Schema, size: shardSizeSchema, from: z.array(id).max(16), cached: z.boolean() }).strict()).min(1),
      deadline: z.number().int(),
    })
    .strict(),
  z
    .object({
      type: z.literal('error'),
      /** One of the shared error codes (src/shared/errors.ts), the same ones the HTTP API answers. */
      code: z.enum(ERROR_CODES),
      message: z.string(),
      /** The `type` of the message that caused it, when known. */
      ref: z.string().optional(),
    })
    .strict(),
]);

export type ShardKeyMsg = z.infer<typeof shardKeySchema>;
export type Capabilities = z.infer<typeof capabilitiesSchema>;
export type Holding = z.infer<typeof holdingSchema>;
export type ClientMessage = z.infer<typeof clientMessageSchema>;
export type ServerMessage = z.infer<typeof serverMessageSchema>;
export type Job = z.infer<typeof jobSchema>;
export type JobShard = z.infer<typeof jobShardSchema>;
export type HolderEntry = z.infer<typeof holderEntrySchema>;
export type VerifyMeasure = z.infer<typeof verifyMeasureSchema>;
export type VerifyRequest = Extract<ServerMessage, { type: 'verify' }>;

export type ParseResult<T> = { ok: true; msg: T } | { ok: false; code: ErrorCode; message: string; ref?: string };

function parseWith<T>(schema: z.ZodType<T>, raw: string | Uint8Array): ParseResult<T> {
  const size = typeof raw === 'string' ? raw.length : raw.byteLength;
  if (size > MAX_MESSAGE_BYTES) {
    return { ok: false, code: 'too-large', message: `message of ${size} bytes exceeds the ${MAX_MESSAGE_BYTES}-byte limit` };
  }
  let value: unknown;
  try {
    value = JSON.parse(typeof raw === 'string' ? raw : new TextDecoder().decode(raw));
  } catch {
    return { ok: false, code: 'bad-json', message: 'message is not valid JSON' };
  }
  const ref =
    value && typeof value === 'object' && typeof (value as { type?: unknown }).type === 'string'
      ? String((value as { type: string }).type).slice(0, 32)
      : undefined;
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue && issue.path.length ? `${issue.path.join('.')}: ` : '';
    return { ok: false, code: 'bad-message', message: `${where}${issue?.message ?? 'invalid message'}`, ...(ref !== undefined && { ref }) };
  }
  return { ok: true, msg: r.data };
}

export function parseClientMessage(raw: string | Uint8Array): ParseResult<ClientMessage> {
  return parseWith(clientMessageSchema, raw);
}

export function parseServerMessage(raw: string | Uint8Array): ParseResult<ServerMessage> {
  return parseWith(serverMessageSchema, raw);
}
