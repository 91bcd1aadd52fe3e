/**
 * The `shardcast export` command: downloads a content's export.mp4 (the
 * server's copy, rebuilt from its cache) into a file, passing a token for
 * private content (README "Security model": the viewer token; the join and
 * admin tokens also pass). The token goes in a header, never in the URL.
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { parseArgs } from 'node:util';
import { apiUrl, type ErrorResponse } from '../src/shared/api.ts';

export const EXPORT_USAGE = `  shardcast export ID [--out FILE] [--server URL] [--token T] [--rendition R]
      Saves content ID as one MP4 (default ID.mp4) from the server's cache.
      --token: for private content, the viewer token (or SHARDCAST_VIEWER_TOKEN;
      the join or admin token also pass).`;

export interface ExportArgs {
  id: string;
  out: string;
  server: string;
  token?: string;
  rendition?: string;
}

/** Parses the arguments after `export`; throws with a message for a missing ID or an unknown option. */
export function parseExport(args: string[], env: NodeJS.ProcessEnv = process.env): ExportArgs {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { out: { type: 'string', short: 'o' }, server: { type: 'string' }, token: { type: 'string' }, rendition: { type: 'string' } },
  });
  const [id, ...extra] = positionals;
  if (!id) throw new Error('export needs a content ID');
  if (extra.length) throw new Error(`unexpected argument ${extra[0]}`);
  const token = values.token ?? (env.SHARDCAST_VIEWER_TOKEN || undefined);
  return {
    id,
    out: values.out ?? `${id}.mp4`,
    server: values.server ?? env.SHARDCAST_SERVER ?? 'http://localhost:8080',
    ...(token !== undefined && { token }),
    ...(values.rendition !== undefined && { rendition: values.rendition }),
  };
}

/** Downloads the export into `args.out` (written to a temp file, then renamed); returns its size in bytes. Throws with the server's coded error. */
export async function exportContent(args: ExportArgs): Promise<number> {
  const url = new URL(apiUrl.export(args.id, args.rendition), args.server);
  const res = await fetch(url, { headers: args.token ? { Authorization: `Bearer ${args.token}` } : {} }).catch((e: unknown) => {
    throw new Error(`could not reach ${url.origin}: ${(e as Error).message} (is the server running?)`);
  });
  if (!res.ok || !res.body) {
    const text = await res.text();
    let err: ErrorResponse['error'] | undefined;
    try {
      err = (JSON.parse(text) as Partial<ErrorResponse>).error;
    } catch {
      /* not JSON: shown as it is */
    }
    const hint = res.status === 401 || res.status === 403 ? '; the contents are private: pass the viewer token with --token or SHARDCAST_VIEWER_TOKEN' : '';
    throw new Error(`export refused (${res.status} ${err?.code ?? ''}): ${err?.message ?? text.slice(0, 200)}${hint}`);
  }
  const tmp = `${args.out}.part`;
  await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), fs.createWriteStream(tmp));
  await fs.promises.rename(tmp, args.out);
  return (await fs.promises.stat(args.out)).size;
}
