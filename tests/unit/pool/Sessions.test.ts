import { describe, expect, it } from 'vitest';
import { Sessions } from '../../../signaling/pool/Sessions.ts';

const conn = () => {
  const closed: string[] = [];
  return { send: () => {}, close: (_c: number, r: string) => void closed.push(r), closed };
};

describe('Sessions', () => {
  const views = { jobsOf: (id: string) => new Set([`${id}-job`]), holdingsOf: () => new Set<string>() };

  it('lets a peer resume its id only with its current secret', () => {
    const s = new Sessions(views);
    const a = s.open(conn(), 'encoder', 0, undefined);
    s.close(a.peer.id);
    expect(s.open(conn(), 'encoder', 0, undefined, a.peer.id, 'wrong').peer.id).not.toBe(a.peer.id);
    const back = s.open(conn(), 'encoder', 0, undefined, a.peer.id, a.resume);
    expect(back.peer.id).toBe(a.peer.id);
    // The secret changed on resume; the id is taken while connected anyway.
    expect(s.open(conn(), 'viewer', 0, undefined, a.peer.id, a.resume).peer.id).not.toBe(a.peer.id);
  });

  it('forgets the oldest secrets past the cap', () => {
    const s = new Sessions(views, 1);
    const a = s.open(conn(), 'viewer', 0, undefined);
    s.open(conn(), 'viewer', 0, undefined);
    s.close(a.peer.id);
    expect(s.open(conn(), 'viewer', 0, undefined, a.peer.id, a.resume).peer.id).not.toBe(a.peer.id);
  });

  it("reads a peer's jobs and holdings from their owners, and finds the silent ones", () => {
    const s = new Sessions(views);
    const { peer } = s.open(conn(), 'encoder', 100, undefined);
    expect([...peer.jobs]).toEqual([`${peer.id}-job`]);
    s.seen(peer.id, 500);
    expect(s.silentSince(400)).toEqual([]);
    expect(s.silentSince(600).map((p) => p.id)).toEqual([peer.id]);
  });

  it('closes every connection at shutdown', () => {
    const s = new Sessions(views);
    const c = conn();
    s.open(c, 'viewer', 0, undefined);
    s.closeAll(1001, 'bye');
    expect(c.closed).toEqual(['bye']);
    expect(s.peers.size).toBe(0);
  });
});
