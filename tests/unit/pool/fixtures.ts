/** Small stand-ins for the pool's unit tests: a content, a store (in memory, or real in a temporary directory), an outbox, a fake clock. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ServerMessage } from '../../../src/shared/protocol.ts';
import { buildShardMap } from '../../../src/shared/shardMap.ts';
import type { VariantKey } from '../../../src/shared/variantKey.ts';
import { ContentStore, type AcceptedVariant, type Content } from '../../../signaling/ContentStore.ts';
import type { Outbox, PoolEvents } from '../../../signaling/pool/types.ts';
import { avFacts } from '../facts.ts';

/** A content of `seconds` of 30 fps video and AAC audio, 0.5 s shards, renditions 180p, 90p, audio. */
export function contentOf(id: string, seconds = 20): Content {
  const facts = avFacts(seconds);
  const map = buildShardMap({ contentId: id, facts, shardDuration: 0.5 });
  const { frameTimes, ...video } = facts.video!;
  return {
    meta: {
      id,
      name: `${id}.mp4`,
      createdAt: '2026-01-01T00:00:00Z',
      sourceFile: 'source.mp4',
      facts: { ...facts, video: { ...video, frameCount: frameTimes.length } },
    },
    map,
  };
}

/**
 * A store over plain map documents whose `status` fields the test sets; it
 * records the durable writes the pool asks for.
 */
export function fakeStore(...contents: Content[]) {
  const writes: string[] = [];
  const st = (id: string, r: string, i: number) => contents.find((c) => c.meta.id === id)?.map.shards[i]?.renditions[r];
  const store = {
    get: (id: string) => contents.find((c) => c.meta.id === id),
    all: () => contents,
    accept(id: string, r: string, i: number, v: AcceptedVariant) {
      writes.push(`accept ${id}/${r}/${i}`);
      Object.assign(st(id, r, i)!, { status: 'ready', ...v });
    },
    revoke(id: string, r: string, i: number) {
      writes.push(`revoke ${id}/${r}/${i}`);
      const s = st(id, r, i)!;
      s.status = 'pending';
      delete s.sha256;
    },
    markFailed(id: string, r: string, i: number) {
      writes.push(`failed ${id}/${r}/${i}`);
      st(id, r, i)!.status = 'failed';
    },
  };
  return { store: store as unknown as ContentStore, writes };
}

/** Marks a variant accepted in a map document (as the store would have). */
export function accepted(c: Content, rendition: string, index: number, sha256 = 'a'.repeat(64), engine = 'ffmpeg-wasm@1'): void {
  Object.assign(c.map.shards[index]!.renditions[rendition]!, { status: 'ready', sha256, size: 1000, engine });
}

export function fakeOutbox() {
  const sent: { to: string; msg: ServerMessage }[] = [];
  const events: { type: keyof PoolEvents; detail: unknown }[] = [];
  const outbox: Outbox = {
    send: (to, msg) => void sent.push({ to, msg }),
    emit: (type, detail) => void events.push({ type, detail }),
  };
  return { outbox, sent, events, of: (type: keyof PoolEvents) => events.filter((e) => e.type === type).map((e) => e.detail) };
}

export function fakeClock(t = 1_000_000) {
  const clock = { t, now: () => clock.t };
  return clock;
}

export const key = (contentId: string, rendition: string, index: number): VariantKey => ({ contentId, rendition, index });

/** One ffmpeg.wasm engine of build "1": its shards claim 'ffmpeg-wasm@1'. */
export const H264 = [{ name: 'ffmpeg-wasm', build: '1', codecs: ['h264', 'aac'], speed: 1 }];

const tempDirs: string[] = [];

/** A real ContentStore in a new temporary directory with content 'c' of `seconds` published (call removeStores after each test). */
export async function publishedStore(seconds: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sc-pool-'));
  tempDirs.push(dir);
  const store = new ContentStore(dir, 10_000);
  await store.open();
  const upload = store.newUploadPath();
  fs.writeFileSync(upload, 'x');
  const c = contentOf('c', seconds);
  const content = await store.publish(upload, c.meta, c.map);
  return { dir, store, content };
}

export function removeStores(): void {
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
