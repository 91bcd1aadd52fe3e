/** Starts a real shardcast server on a free port with its own temporary data directory. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type ServerConfigOverrides } from '../../signaling/config.ts';
import { startServer, type RunningServer } from '../../signaling/server.ts';
import type { ShardMap } from '../../src/shared/shardMap.ts';

export interface TestServer extends RunningServer {
  dataDir: string;
  /** Stops the server and starts a new one on the same data directory (a restart). */
  restart(overrides?: ServerConfigOverrides): Promise<TestServer>;
  /** Stops the server and removes its data. */
  destroy(): Promise<void>;
}

/**
 * The admin token every test server uses unless a test says otherwise.
 * `upload()` sends it, and it is put in SHARDCAST_TOKEN so the CLI, run as a
 * child process by tests, sends it too: tests that are not about access
 * control need not know there is any.
 */
export const TEST_ADMIN_TOKEN = 'test-admin-token';
process.env.SHARDCAST_TOKEN ??= TEST_ADMIN_TOKEN;

/** Headers that carry the test admin token. */
export const adminHeaders = (token = TEST_ADMIN_TOKEN): Record<string, string> => ({ Authorization: `Bearer ${token}` });

export async function startTestServer(overrides: ServerConfigOverrides = {}, dataDir?: string): Promise<TestServer> {
  const dir = dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-test-'));
  const config = loadConfig([], {}, { port: 0, host: '0.0.0.0', dataDir: dir, log: false, snapshotDelayMs: 50, adminToken: TEST_ADMIN_TOKEN, ...overrides });
  const s = await startServer(config);
  return Object.assign(s, {
    dataDir: dir,
    async restart(more: ServerConfigOverrides = {}) {
      await s.close();
      return startTestServer({ ...overrides, ...more }, dir);
    },
    async destroy() {
      await s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** POSTs a file to /api/contents the way the CLI does, returning status and JSON body. */
export async function upload(base: string, body: Uint8Array, query = '', name = 'clip.mp4'): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}/api/contents${query}`, {
    method: 'POST',
    body: body as unknown as BodyInit,
    headers: { 'Content-Type': 'application/octet-stream', 'X-Filename': name, ...adminHeaders() },
  });
  return { status: res.status, json: await res.json() };
}

/**
 * Waits until every variant of the content is in the server cache (tabs upload before they report, but a test must
 * not race the last PUT), or throws after `timeoutMs` naming the missing ones.
 */
export async function waitCached(base: string, id: string, map: ShardMap, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  const missing = new Set(map.shards.flatMap((s) => Object.keys(s.renditions).map((r) => `${r}/${s.index}`)));
  while (missing.size) {
    for (const k of [...missing]) {
      const res = await fetch(`${base}/api/contents/${id}/shards/${k}`, { method: 'HEAD' });
      if (res.status === 200) missing.delete(k);
    }
    if (missing.size === 0) return;
    if (Date.now() > end) throw new Error(`shards of ${id} never reached the cache: ${[...missing].slice(0, 8).join(', ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
