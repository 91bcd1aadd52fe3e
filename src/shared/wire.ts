/**
 * The peer wire protocol: how shard bytes travel between two tabs over a
 * WebRTC data channel. A small set of named commands, after p2p-media-loader:
 *
 *   request {id, key}            ask for a shard variant
 *   header  {id, size, sha256}   the bytes follow, in chunks
 *   chunk   (binary)             4-byte request id + at most CHUNK_PAYLOAD bytes
 *   done    {id}                 all bytes sent
 *   absent  {id}                 not held (or not any more)
 *   cancel  {id}                 the requester no longer wants it
 *
 * Commands are JSON text frames; chunks are binary frames, so neither needs
 * escaping. Several requests may be in flight on one channel.
 */
import { z } from 'zod';
import { shardKeySchema } from './protocol.ts';
import { sha256Schema } from './shardMap.ts';

/** Largest data-channel message we send: Chromium is happiest at 64 KiB. */
export const MAX_CHUNK_BYTES = 64 * 1024;
const ID_BYTES = 4;
export const CHUNK_PAYLOAD = MAX_CHUNK_BYTES - ID_BYTES;
/** A shard larger than this is refused outright (a 0.5 s 4K shard is far below it). */
export const MAX_SHARD_BYTES = 64 * 2 ** 20;

const reqId = z.number().int().nonnegative().max(0xffffffff);

export const wireCommandSchema = z.discriminatedUnion('t', [
  z.object({ t: z.literal('request'), id: reqId, key: shardKeySchema }).strict(),
  z.object({ t: z.literal('header'), id: reqId, size: z.number().int().nonnegative().max(MAX_SHARD_BYTES), sha256: sha256Schema }).strict(),
  z.object({ t: z.literal('done'), id: reqId }).strict(),
  z.object({ t: z.literal('absent'), id: reqId, reason: z.string().max(200).optional() }).strict(),
  z.object({ t: z.literal('cancel'), id: reqId }).strict(),
]);

export type WireCommand = z.infer<typeof wireCommandSchema>;
export type WireChunk = { t: 'chunk'; id: number; data: Uint8Array };
export type WireMessage = WireCommand | WireChunk;

export class WireError extends Error {
  override name = 'WireError';
}

export function encodeCommand(cmd: WireCommand): string {
  return JSON.stringify(cmd);
}

export function encodeChunk(id: number, data: Uint8Array): Uint8Array {
  if (data.byteLength > CHUNK_PAYLOAD) throw new WireError(`chunk of ${data.byteLength} bytes exceeds ${CHUNK_PAYLOAD}`);
  const out = new Uint8Array(ID_BYTES + data.byteLength);
  new DataView(out.buffer).setUint32(0, id);
  out.set(data, ID_BYTES);
  return out;
}

/** Decodes one data-channel message; throws WireError on anything malformed. */
export function decodeWire(msg: string | ArrayBuffer | Uint8Array): WireMessage {
  if (typeof msg === 'string') {
    if (msg.length > 4096) throw new WireError('command too long');
    let v: unknown;
    try {
      v = JSON.parse(msg);
    } catch {
      throw new WireError('command is not JSON');
    }
    const r = wireCommandSchema.safeParse(v);
    if (!r.success) throw new WireError(`bad command: ${r.error.issues[0]?.message ?? 'invalid'}`);
    return r.data;
  }
  const bytes = msg instanceof Uint8Array ? msg : new Uint8Array(msg);
  if (bytes.byteLength < ID_BYTES) throw new WireError('chunk too short');
  if (bytes.byteLength > MAX_CHUNK_BYTES) throw new WireError('chunk too long');
  const id = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  return { t: 'chunk', id, data: bytes.subarray(ID_BYTES) };
}

/** Splits a shard into chunk frames. */
export function* chunksOf(id: number, bytes: Uint8Array): Generator<Uint8Array> {
  for (let off = 0; off < bytes.byteLength; off += CHUNK_PAYLOAD) {
    yield encodeChunk(id, bytes.subarray(off, Math.min(bytes.byteLength, off + CHUNK_PAYLOAD)));
  }
}

/**
 * Reassembles one transfer: checks the sizes as chunks arrive, so a peer
 * cannot make us buffer more than it announced.
 */
export class Assembly {
  private readonly buf: Uint8Array;
  private received = 0;

  constructor(
    readonly size: number,
    readonly sha256: string,
  ) {
    if (size > MAX_SHARD_BYTES) throw new WireError(`announced size ${size} exceeds ${MAX_SHARD_BYTES}`);
    this.buf = new Uint8Array(size);
  }

  add(data: Uint8Array): void {
    if (this.received + data.byteLength > this.size) throw new WireError('peer sent more bytes than it announced');
    this.buf.set(data, this.received);
    this.received += data.byteLength;
  }

  get complete(): boolean {
    return this.received === this.size;
  }

  get progress(): number {
    return this.size === 0 ? 1 : this.received / this.size;
  }

  bytes(): Uint8Array {
    if (!this.complete) throw new WireError(`transfer incomplete: ${this.received} of ${this.size} bytes`);
    return this.buf;
  }
}

/** SHA-256 as lowercase hex, with WebCrypto (browser and Node 20). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}
