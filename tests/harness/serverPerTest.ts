/**
 * Server tests' per-test lifecycle: one real server per test, destroyed with
 * the WebSocket peers the test tracked once it ends; and publishing a fixture
 * to any server (in-process or a child process) with its shard map back.
 */
import fs from 'node:fs';
import { afterEach, expect } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import type { ServerConfigOverrides } from '../../signaling/config.ts';
import { fixture, type FixtureName } from './fixtures.ts';
import { adminHeaders, startTestServer, type TestServer } from './testServer.ts';
import type { WsPeer } from './wsPeer.ts';

/** Publishes fixture `name` to the server at `base` with the admin `token` (query: publish options); expects 201. */
export async function publishFixture(base: string, name: FixtureName, token?: string, query = ''): Promise<{ id: string; map: ShardMap }> {
  const res = await fetch(`${base}/api/contents${query}`, {
    method: 'POST',
    body: fs.readFileSync(await fixture(name)) as unknown as BodyInit,
    headers: adminHeaders(token),
  });
  const body = (await res.json()) as { id: string };
  expect(res.status, JSON.stringify(body)).toBe(201);
  const map = ((await (await fetch(`${base}/api/contents/${body.id}`)).json()) as { shardMap: ShardMap }).shardMap;
  return { id: body.id, map };
}

/** Call at a test file's top level: `start` gives the test its server, `track` a peer to kill after it. */
export function serverPerTest(): {
  start(overrides?: ServerConfigOverrides, dataDir?: string): Promise<TestServer>;
  track<T extends WsPeer>(p: T): T;
} {
  let servers: TestServer[] = [];
  const peers: WsPeer[] = [];
  afterEach(async () => {
    for (const p of peers.splice(0)) p.kill();
    // The newest first: a server started on an older one's data directory goes before that directory does.
    for (const s of servers.reverse()) await s.destroy();
    servers = [];
  });
  return {
    async start(overrides = {}, dataDir) {
      const s = await startTestServer(overrides, dataDir);
      servers.push(s);
      return s;
    },
    track(p) {
      peers.push(p);
      return p;
    },
  };
}
