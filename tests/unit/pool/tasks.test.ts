import { afterEach, describe, expect, it, vi } from 'vitest';
import { Every, HeartbeatExpiry, JobDeadlines, Once, Ticker } from '../../../signaling/pool/tasks.ts';

afterEach(() => vi.useRealTimers());

describe('pool tasks', () => {
  it('the ticker runs the tasks in order each period, slower ones every n-th tick', () => {
    vi.useFakeTimers();
    const ran: string[] = [];
    const t = new Ticker(100, [new Every('a', 100, () => ran.push('a')), new Every('b', 200, () => ran.push('b'))], () => Date.now());
    t.start();
    vi.advanceTimersByTime(400);
    t.stop();
    vi.advanceTimersByTime(400);
    expect(ran).toEqual(['a', 'a', 'b', 'a', 'a', 'b']);
  });

  it('heartbeat expiry allows for its own lateness', () => {
    const closed: string[] = [];
    const seen = new Map([['p', 0]]);
    const task = new HeartbeatExpiry(1000, 6000, (cutoff) =>
      [...seen].filter(([, t]) => t < cutoff).map(([id]) => ({ id, close: () => void closed.push(id) })),
    );
    task.run(1000);
    // 9 s late (a long task on the server): p, silent for 10 s, is given those 9 s.
    task.run(11_000);
    expect(closed).toEqual([]);
    task.run(12_000);
    expect(closed).toEqual(['p']);
  });

  it('deadlines expire every job found overdue', () => {
    const expired: string[] = [];
    new JobDeadlines(
      1000,
      (now) =>
        [
          { id: 'a', deadline: 5 },
          { id: 'b', deadline: 50 },
        ].filter((j) => j.deadline < now),
      (j) => void expired.push(j.id),
    ).run(10);
    expect(expired).toEqual(['a']);
  });

  it('a one-shot task runs once, at its time', () => {
    let n = 0;
    const t = new Once('x', 100, 500, () => n++);
    t.run(400);
    t.run(500);
    t.run(600);
    expect(n).toBe(1);
  });
});
