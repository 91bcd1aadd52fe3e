/**
 * The `shardcast` command line:
 *   shardcast publish FILE [--server URL] [--token T] [--shard-duration S]   upload; prints the content id
 *   shardcast export ID [--out FILE] [--token T]                 saves the server's export.mp4 (cliExport.ts)
 *   shardcast serve [options]                                    same as npm start
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { apiUrl, type ErrorResponse, type PublishResponse } from '../src/shared/api.ts';
import { checkShardDuration } from '../src/shared/shardMap.ts';
import { EXPORT_USAGE, exportContent, parseExport } from './cliExport.ts';

const USAGE = `usage:
  shardcast publish FILE [--server URL] [--token T] [--shard-duration S]
      Uploads FILE to a shardcast server (default http://localhost:8080, or
      SHARDCAST_SERVER) and prints the new content's id on stdout.
      --token: the server's admin token (or SHARDCAST_TOKEN); the server
      prints where it keeps it when it starts (DATA_DIR/admin-token).
      --shard-duration: seconds per shard, 0.2 to 0.5 (default 0.3).
${EXPORT_USAGE}
  shardcast serve [options]
      Runs the server (same as npm start); --help lists its options.`;

interface PublishArgs {
  file: string;
  server: string;
  token?: string;
  shardDuration?: number;
}

function parsePublish(args: string[]): PublishArgs {
  let file: string | undefined;
  let server = process.env.SHARDCAST_SERVER ?? 'http://localhost:8080';
  let shardDuration: number | undefined;
  let token = process.env.SHARDCAST_TOKEN || undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--server') server = value();
    else if (a.startsWith('--server=')) server = a.slice(9);
    else if (a === '--token') token = value();
    else if (a.startsWith('--token=')) token = a.slice(8);
    else if (a === '--shard-duration') shardDuration = checkShardDuration(value());
    else if (a.startsWith('--shard-duration=')) shardDuration = checkShardDuration(a.slice(17));
    else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else if (file === undefined) file = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!file) throw new Error('publish needs a FILE');
  return { file, server, ...(token !== undefined && { token }), ...(shardDuration !== undefined && { shardDuration }) };
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise. */
function progressReporter(total: number): (sent: number) => void {
  const tty = process.stderr.isTTY;
  let lastDecile = -1;
  const started = Date.now();
  return (sent) => {
    const frac = total > 0 ? sent / total : 1;
    if (tty) {
      const width = 30;
      const filled = Math.round(frac * width);
      const rate = sent / Math.max(0.001, (Date.now() - started) / 1000);
      process.stderr.write(
        `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${formatBytes(sent)} / ${formatBytes(total)}  ${formatBytes(rate)}/s `,
      );
      if (sent >= total) process.stderr.write('\n');
    } else {
      const decile = Math.floor(frac * 10);
      if (decile !== lastDecile) {
        lastDecile = decile;
        process.stderr.write(`uploading: ${decile * 10}% (${formatBytes(sent)} of ${formatBytes(total)})\n`);
      }
    }
  };
}

export async function publish(args: PublishArgs, onProgress?: (sent: number, total: number) => void): Promise<PublishResponse> {
  const stat = await fs.promises.stat(args.file).catch(() => {
    throw new Error(`cannot read ${args.file}: no such file`);
  });
  if (!stat.isFile()) throw new Error(`${args.file} is not a file`);
  let base: URL;
  try {
    base = new URL(args.server);
  } catch {
    throw new Error(`--server must be a URL such as http://localhost:8080 (got "${args.server}")`);
  }
  const url = new URL(apiUrl.publish({ shardDuration: args.shardDuration }), base);
  const lib = url.protocol === 'https:' ? https : http;
  const total = stat.size;
  let sent = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      sent += chunk.length;
      onProgress?.(sent, total);
      cb(null, chunk);
    },
  });
  return await new Promise((resolve, reject) => {
    const req = lib.request(url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': total,
        'X-Filename': encodeURIComponent(path.basename(args.file)),
        ...(args.token !== undefined && { Authorization: `Bearer ${args.token}` }),
        // The server refuses a missing or wrong token before the body is sent.
        Expect: '100-continue',
      },
    });
    req.on('error', (e) => reject(new Error(`could not reach ${base.origin}: ${e.message} (is the server running? start it with npm start)`)));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          return reject(new Error(`server answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`));
        }
        if (res.statusCode === 201 || res.statusCode === 202) return resolve(body as PublishResponse);
        const err = (body as Partial<ErrorResponse>).error;
        if (res.statusCode === 401 || res.statusCode === 403) {
          return reject(
            new Error(`upload refused (${res.statusCode} ${err?.code ?? ''}): ${err?.message ?? text}; pass the admin token with --token or SHARDCAST_TOKEN`),
          );
        }
        reject(new Error(`upload refused (${res.statusCode} ${err?.code ?? ''}): ${err?.message ?? text}`));
      });
    });
    let sending = false;
    const send = () => {
      if (sending) return;
      sending = true;
      pipeline(fs.createReadStream(args.file), counter, req).catch(() => {
        /* the request's own error or response handler reports it */
      });
    };
    req.on('continue', send);
    // A proxy that ignores Expect never says continue: send anyway after a second, as curl does.
    const fallback = setTimeout(send, 1000);
    req.on('response', () => clearTimeout(fallback));
    req.on('error', () => clearTimeout(fallback));
  });
}

export async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === 'publish') {
      const args = parsePublish(rest);
      const size = (await fs.promises.stat(args.file).catch(() => ({ size: 0 }))).size;
      const report = progressReporter(size);
      const r = await publish(args, (sent) => report(sent));
      process.stderr.write(
        r.status === 'normalizing'
          ? `published, normalizing: ${r.reason}\n`
          : `published: ${r.shards} shards x ${r.renditions.length} renditions (${r.renditions.join(', ')})\n`,
      );
      process.stderr.write(`watch: ${new URL(`/watch/${r.id}`, args.server).toString()}\n`);
      process.stdout.write(`${r.id}\n`);
      return 0;
    }
    if (cmd === 'export') {
      const args = parseExport(rest);
      const size = await exportContent(args);
      process.stderr.write(`saved ${args.out} (${formatBytes(size)})\n`);
      return 0;
    }
    if (cmd === 'serve') {
      const { main } = await import('./main.ts');
      await main(rest);
      return 0;
    }
    if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
      console.log(USAGE);
      return cmd === undefined ? 1 : 0;
    }
    console.error(`shardcast: unknown command "${cmd}"\n${USAGE}`);
    return 2;
  } catch (e) {
    console.error(`shardcast: ${(e as Error).message}`);
    return 1;
  }
}
