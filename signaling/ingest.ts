/**
 * Upload -> probe -> ShardMap -> published content. The body is streamed to a
 * temporary file (never held in memory) and only a whole, probed, mapped
 * upload is renamed into the store; anything else leaves nothing behind.
 */
import type { IncomingMessage } from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { z } from 'zod';
import { buildShardMap, checkShardDuration, renditionSchema, type Rendition } from '../src/shared/shardMap.ts';
import type { Content, ContentStore } from './ContentStore.ts';
import { storedFacts } from './ContentStore.ts';
import { ShardcastError } from '../src/shared/errors.ts';
import { probeFile, ProbeError } from './media/probe.ts';
import type { Mezzanines, PendingSource } from './Mezzanine.ts';

export const EXT_BY_CONTAINER: Record<string, string> = { mp4: '.mp4', mov: '.mov', webm: '.webm', matroska: '.mkv', mkv: '.mkv' };

/** Stripped from uploaded file names: they would corrupt logs and pages. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this matches.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/g;

/** Keeps a display name readable and harmless. */
export function cleanName(raw: string | undefined): string {
  let name = raw ?? '';
  try {
    name = decodeURIComponent(name);
  } catch {
    /* keep as sent */
  }
  name = name
    .replace(/^.*[\\/]/, '')
    .replace(CONTROL_CHARACTERS, '')
    .trim()
    .slice(0, 200);
  return name || 'untitled';
}

export interface IngestOptions {
  maxBytes: number;
  name?: string;
  shardDuration?: string | undefined;
  /** A rendition ladder as JSON, replacing the default one. */
  renditions?: string | undefined;
}

function parseLadder(raw: string | undefined): Rendition[] | undefined {
  if (raw === undefined || raw === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new ShardcastError(
      'bad-ladder',
      'renditions must be a JSON array such as [{"id":"720p","video":{"codec":"h264","width":1280,"height":720,"bitrate":3000000}}]',
    );
  }
  const r = z.array(renditionSchema).min(1).max(16).safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ShardcastError('bad-ladder', `renditions: ${i?.path.join('.')}: ${i?.message}`);
  }
  return r.data;
}

/**
 * Streams a request body into a new file `file`, never holding it in memory.
 * @throws ShardcastError too-large (over `maxBytes`, named by `option`), upload-aborted, empty.
 */
export async function receiveToFile(req: IncomingMessage, file: string, maxBytes: number, what: string, option: string): Promise<number> {
  let received = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      if (received > maxBytes) cb(new ShardcastError('too-large', `the ${what} exceeds the ${maxBytes}-byte limit (server option ${option})`));
      else cb(null, chunk);
    },
  });
  try {
    await pipeline(req, limiter, fs.createWriteStream(file, { flags: 'wx' }));
  } catch (e) {
    if (e instanceof ShardcastError) throw e;
    throw new ShardcastError('upload-aborted', `the ${what} did not arrive whole (${(e as Error).message})`);
  }
  if (received === 0) throw new ShardcastError('empty', `the ${what} is empty: send the media file as the request body`);
  return received;
}

/** What publishing gave: a content, or a source waiting for a volunteer's mezzanine (Mezzanine.ts). */
export type Ingested = { content: Content } | { normalizing: PendingSource };

export async function ingestUpload(req: IncomingMessage, store: ContentStore, opts: IngestOptions, mezz?: Mezzanines): Promise<Ingested> {
  const shardDuration = checkShardDuration(opts.shardDuration ?? undefined);
  const ladder = parseLadder(opts.renditions);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > opts.maxBytes) {
    throw new ShardcastError('too-large', `upload of ${declared} bytes exceeds the ${opts.maxBytes}-byte limit (server option --max-upload-bytes)`);
  }
  const tmp = store.newUploadPath();
  try {
    await receiveToFile(req, tmp, opts.maxBytes, 'upload', '--max-upload-bytes');

    let facts;
    try {
      facts = await probeFile(tmp);
    } catch (e) {
      // A track only a volunteer's engine decodes: the source waits for its mezzanine instead of being refused.
      if (e instanceof ProbeError && mezz?.takes(e.undecoded)) {
        const pending = await mezz.add(tmp, e.undecoded, { name: cleanName(opts.name), shardDuration, ...(ladder && { renditions: ladder }) }, e);
        return { normalizing: pending };
      }
      if (e instanceof ProbeError) throw e;
      throw new ShardcastError('corrupt', `the file could not be read as media: ${(e as Error).message}`);
    }
    const id = store.newContentId();
    // Throws a ShardMapError (no-media, a ladder the source cannot fill).
    const map = buildShardMap({ contentId: id, facts, shardDuration, ...(ladder && { renditions: ladder }) });
    const name = cleanName(opts.name);
    const content = await store.publish(
      tmp,
      {
        id,
        name,
        createdAt: new Date().toISOString(),
        sourceFile: `source${EXT_BY_CONTAINER[facts.container] ?? '.bin'}`,
        facts: storedFacts(facts),
      },
      map,
    );
    return { content };
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}
