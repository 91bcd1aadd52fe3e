/** The page state classes copy what the controllers' events say, with no polling. */
import { describe, expect, it } from 'vitest';
import { TypedEmitter } from '../../src/shared/events.ts';
import type { Encoder, EncoderEvents, EncoderState } from '../../src/encoder/Encoder.ts';
import { EncodeState } from '../../src/ui/encodeState.svelte.ts';
import { WatchState } from '../../src/ui/watchState.svelte.ts';
import type { CellState, Viewer, ViewerEvents } from '../../src/viewer/Viewer.ts';

class FakeViewer extends TypedEmitter<ViewerEvents> {
  state = 'loading';
  error: string | undefined;
  currentRendition: string | undefined;
  map: unknown = {
    renditions: [
      { id: '360p', video: {} },
      { id: 'sound', audio: {} },
    ],
  };
  cells: { video: CellState[]; audio: CellState[] } = {
    video: [0, 1].map(() => ({ status: 'pending', failures: [] })),
    audio: [0, 1].map(() => ({ status: 'pending', failures: [] })),
  };
  stats = { fromPeers: 0, fetchMs: [1, 2], transferMs: [3] };
}

describe('WatchState', () => {
  it('follows the viewer: the timeline once the map is in, then one cell at a time, and the stats', () => {
    const v = new FakeViewer();
    const w = new WatchState();
    const off = w.follow(v as unknown as Viewer);
    v.emit('stats', {});
    expect(w.cells.video).toHaveLength(2);
    expect(w.renditionIds).toEqual(['360p']);
    expect(w.stats?.fetchMs).toEqual([]);

    v.cells.audio[1] = { status: 'ready', source: 'peer1', rendition: 'sound', failures: [] };
    v.stats.fromPeers = 1;
    v.emit('cell', { track: 'audio', index: 1 });
    expect(w.cells.audio[1]).toMatchObject({ status: 'ready', source: 'peer1' });
    expect(w.cells.audio[1]).not.toBe(v.cells.audio[1]); // a copy: the viewer keeps mutating its own
    expect(w.stats?.fromPeers).toBe(1);

    v.error = 'Press play to start';
    v.emit('update', { state: 'playing' });
    expect([w.playState, w.error]).toEqual(['playing', 'Press play to start']);

    off();
    v.emit('update', { state: 'ended' });
    expect(w.playState).toBe('playing');
  });
});

describe('EncodeState', () => {
  it('takes a fresh copy of the encoder state on each update', () => {
    const enc = new TypedEmitter<EncoderEvents>() as TypedEmitter<EncoderEvents> & { state: EncoderState };
    enc.state = { phase: 'loading', log: [], current: undefined } as unknown as EncoderState;
    const page = new EncodeState(enc as unknown as Encoder);
    expect(page.s.phase).toBe('loading');
    enc.state.phase = 'idle';
    enc.state.log.push('joined');
    enc.emit('update', enc.state);
    expect(page.s.phase).toBe('idle');
    expect(page.s.log).toEqual(['joined']);
    expect(page.s.log).not.toBe(enc.state.log);
  });
});
