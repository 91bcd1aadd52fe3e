/**
 * Mezzanine jobs over HTTP (signaling/Mezzanine.ts owns their state): a
 * volunteer tab proves it is a connected encoder with ffmpeg.wasm (its peer id
 * and current resume secret, plus the join token) and claims a job, fetches
 * the whole source with the job's token, and PUTs the MP4 it made with the
 * same token. Claims and uploads are checked from the request head before a
 * byte of a body is read; bodies are bounded (--mezzanine-max-bytes).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { API_PATHS, apiUrl } from '../../src/shared/api.ts';
import { ShardcastError } from '../../src/shared/errors.ts';
import { requireJoin } from '../auth.ts';
import type { EdgeContext } from '../context.ts';
import { readBody, sendJson, type Router } from '../http.ts';
import { receiveToFile } from '../ingest.ts';
import { MEZZANINE_ENGINE, type Mezzanines } from '../Mezzanine.ts';

const claimSchema = z.object({ peerId: z.string().min(1).max(64), resume: z.string().min(1).max(64) }).strict();

/** The claiming volunteer's peer id, checked against the pool's sessions. @throws unknown-peer, not-an-encoder, bad-json, bad-message. */
async function claimant(ctx: EdgeContext, req: IncomingMessage): Promise<string> {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(await readBody(req, 1024, 10_000)).toString('utf8'));
  } catch (e) {
    if (e instanceof ShardcastError) throw e;
    throw new ShardcastError('bad-json', 'the claim is JSON: {"peerId": "...", "resume": "..."} (from the pool\'s welcome)');
  }
  const parsed = claimSchema.safeParse(body);
  if (!parsed.success) throw new ShardcastError('bad-message', 'the claim is {"peerId": "...", "resume": "..."} (from the pool\'s welcome)');
  const peer = ctx.pool.sessions.authenticate(parsed.data.peerId, parsed.data.resume);
  if (!peer) throw new ShardcastError('unknown-peer', 'no connected tab has this peer id and resume secret: join the pool first');
  if (peer.role !== 'encoder' || !peer.capabilities?.engines.some((e) => e.name === MEZZANINE_ENGINE)) {
    throw new ShardcastError('not-an-encoder', `mezzanine jobs go to encoders with the ${MEZZANINE_ENGINE} engine`);
  }
  return peer.id;
}

export function mezzanineRoutes(router: Router, ctx: EdgeContext, mezz: Mezzanines): void {
  const { config } = ctx;
  router
    .add('POST', API_PATHS.mezzanineClaim, async (req, res, _p, url) => {
      requireJoin(req, url, config.joinToken, ctx.admin.token);
      const job = mezz.claim(await claimant(ctx, req));
      if (!job) {
        res.writeHead(204, { 'Cache-Control': 'no-store' });
        res.end();
        return;
      }
      sendJson(res, 200, {
        ...job,
        source: apiUrl.mezzanineSource(job.contentId, job.token),
        upload: apiUrl.mezzanine(job.contentId, job.token),
        maxBytes: mezz.options.maxBytes,
      });
    })
    .add('GET', API_PATHS.mezzanineSource, async (req, res, p, url) => {
      const { source } = mezz.checkToken(p.id!, url.searchParams.get('job'));
      const file = mezz.sourcePath(source);
      const { size } = await fsp.stat(file);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size, 'Cache-Control': 'no-store' });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      await pipeline(fs.createReadStream(file), res);
    })
    .add(
      'PUT',
      API_PATHS.mezzanine,
      async (req, res, p, url) => {
        const token = url.searchParams.get('job');
        mezz.checkToken(p.id!, token);
        const file = mezz.newUploadPath();
        try {
          await receiveToFile(req, file, mezz.options.maxBytes, 'mezzanine', '--mezzanine-max-bytes');
          const engine = String(req.headers['x-engine'] ?? '');
          const r = await mezz.upload(p.id!, token!, engine, file);
          if (r.status === 'published') ctx.pool.schedule();
          ctx.log(`mezzanine of ${p.id}: ${r.reason}`);
          sendJson(res, 200, r);
        } finally {
          await fsp.rm(file, { force: true });
        }
      },
      // From the head alone: a known job, and a declared size within the cap.
      (req, p) => {
        mezz.checkToken(p.id!, new URL(req.url ?? '/', 'http://x').searchParams.get('job'));
        const declared = Number(req.headers['content-length']);
        if (Number.isFinite(declared) && declared > mezz.options.maxBytes) {
          throw new ShardcastError(
            'too-large',
            `a mezzanine of ${declared} bytes exceeds the ${mezz.options.maxBytes}-byte limit (server option --mezzanine-max-bytes)`,
          );
        }
      },
    );
}
