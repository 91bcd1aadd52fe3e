/**
 * The setting of the trust, cheater and verification tests
 * (tests/server/trust.test.ts, cheaters.test.ts, verification.test.ts): a real server that cross-checks the native encoders'
 * engine by hash (native x264 with one thread is deterministic, like
 * ffmpeg.wasm's single-thread core), one small H.264 rendition of the
 * v-23976 clip, and the servers and peers a test started, for its cleanup.
 */
import fs from 'node:fs';
import { afterEach, beforeAll, expect } from 'vitest';
import type { ShardMap } from '../../src/shared/shardMap.ts';
import { fixture } from './fixtures.ts';
import { NATIVE_ENGINE } from './nativeEncoder.ts';
import { startTestServer, upload, type TestServer } from './testServer.ts';

/** One H.264 rendition: every job goes to the native encoders. */
export const LADDER = encodeURIComponent(JSON.stringify([{ id: 'v', video: { codec: 'h264', width: 320, height: 180, bitrate: 400_000 } }]));

/**
 * Registers the suite's hooks (load the clip; after each test, close what it
 * opened and destroy its servers) and returns the helpers bound to them.
 */
export function trustSuite() {
  let clip: Uint8Array;
  const servers: TestServer[] = [];
  const closers: (() => void)[] = [];
  beforeAll(async () => {
    clip = fs.readFileSync(await fixture('v-23976'));
  });
  afterEach(async () => {
    for (const c of closers.splice(0)) c();
    for (const s of servers.splice(0)) await s.destroy();
  });
  return {
    servers,
    closers,
    /** A server whose heartbeat timeout is short and that cross-checks the native engine. */
    async start(over: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
      const s = await startTestServer({ heartbeatMs: 200, heartbeatTimeoutMs: 2000, verifyEngines: `ffmpeg-wasm,${NATIVE_ENGINE}`, ...over });
      servers.push(s);
      return s;
    },
    /** Publishes the clip with LADDER; returns the content id. */
    async publish(s: TestServer): Promise<string> {
      const r = await upload(s.url, clip, `?renditions=${LADDER}`);
      expect(r.status, JSON.stringify(r.json)).toBe(201);
      return r.json.id as string;
    },
  };
}

export async function mapOf(s: TestServer, id: string): Promise<{ status: string; shardMap: ShardMap }> {
  return (await (await fetch(`${s.url}/api/contents/${id}`)).json()) as { status: string; shardMap: ShardMap };
}
