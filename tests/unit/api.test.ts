/** The API contract's URL builders (src/shared/api.ts) against the server's own routes. */
import { describe, expect, it } from 'vitest';
import { API_PATHS, apiUrl, fillPath } from '../../src/shared/api.ts';
import { Router } from '../../signaling/http.ts';

/** A router with every API pattern, answering which one matched. */
function routes(): Router {
  const r = new Router();
  for (const [name, pattern] of Object.entries(API_PATHS)) r.add(name === 'shard' ? 'PUT' : 'GET', pattern, () => {}).add('POST', pattern, () => {});
  return r;
}

function matched(path: string, method = 'GET'): Record<string, string> | undefined {
  const url = new URL(path, 'http://x');
  const m = routes().match(method, url.pathname);
  return m && m !== 'method-not-allowed' ? m.params : undefined;
}

describe('apiUrl', () => {
  it('builds every path the routes take, with ids encoded', () => {
    expect(apiUrl.contents()).toBe('/api/contents');
    expect(apiUrl.content('a b/c')).toBe('/api/contents/a%20b%2Fc');
    expect(matched(apiUrl.content('a b/c'))).toEqual({ id: 'a b/c' });
    expect(apiUrl.shard({ contentId: 'c1', rendition: '360p', index: 12 })).toBe('/api/contents/c1/shards/360p/12');
    expect(matched(apiUrl.shard({ contentId: 'c1', rendition: '360p', index: 12 }), 'PUT')).toEqual({ id: 'c1', rendition: '360p', index: '12' });
    expect(apiUrl.shard({ contentId: 'c1', rendition: 'audio', index: 3 }, { lead: 2048, tail: 0 })).toBe('/api/contents/c1/shards/audio/3?lead=2048&tail=0');
    expect(apiUrl.shard({ contentId: 'c1', rendition: 'audio', index: 3 }, { lead: undefined })).toBe('/api/contents/c1/shards/audio/3');
    expect(apiUrl.export('c1')).toBe('/api/contents/c1/export.mp4');
    expect(apiUrl.export('c1', '180p')).toBe('/api/contents/c1/export.mp4?rendition=180p');
    expect(matched(apiUrl.export('c1', '180p'))).toEqual({ id: 'c1' });
    expect(apiUrl.pool()).toBe('/api/pool');
    expect(apiUrl.health()).toBe('/api/health');
    expect(apiUrl.metrics()).toBe('/metrics');
  });

  it('writes source ranges as the pool does (6 decimals) and publish options as a query', () => {
    // signaling/PoolManager.ts builds job.sourceUrl the same way.
    const q = new URLSearchParams({ start: (1 / 3).toFixed(6), end: (10 / 3).toFixed(6), tracks: 'audio' });
    expect(apiUrl.source('c1', { start: 1 / 3, end: 10 / 3, tracks: 'audio' })).toBe(`/api/contents/c1/source?${q.toString()}`);
    expect(matched(apiUrl.source('c1', { start: 0, end: 3, tracks: 'both' }))).toEqual({ id: 'c1' });
    expect(apiUrl.publish()).toBe('/api/contents');
    expect(apiUrl.publish({ shardDuration: 0.3 })).toBe('/api/contents?shardDuration=0.3');
    expect(apiUrl.publish({ shardDuration: undefined, name: 'a b.mp4' })).toBe('/api/contents?name=a+b.mp4');
  });

  it('points the WebSocket at the page origin, wss under https', () => {
    expect(apiUrl.ws({ protocol: 'http:', host: 'localhost:8080' })).toBe('ws://localhost:8080/ws');
    expect(apiUrl.ws({ protocol: 'https:', host: 'pool.example' })).toBe('wss://pool.example/ws');
  });

  it('fillPath encodes each parameter', () => {
    expect(fillPath('/a/:x/b/:y', { x: '?', y: 7 })).toBe('/a/%3F/b/7');
  });
});
