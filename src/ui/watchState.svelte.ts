/**
 * The watch page's state, fed by the Viewer's events (no polling): play
 * state and error on `update`, one timeline cell at a time on `cell`, the
 * stats line on `stats`. The Viewer stays the owner; this holds the copies
 * Svelte renders.
 */
import type { Track } from '../viewer/Reconstructor.ts';
import type { CellState, PlayState, Viewer, ViewerStats } from '../viewer/Viewer.ts';

export class WatchState {
  playState = $state<PlayState>('loading');
  error = $state<string | undefined>();
  readonly cells = $state<{ video: CellState[]; audio: CellState[] }>({ video: [], audio: [] });
  stats = $state.raw<ViewerStats | undefined>();
  rendition = $state<string | undefined>();
  /** Video rendition ids in map order: lower renditions draw shorter cells. */
  renditionIds = $state.raw<string[]>([]);

  /** Subscribes to `v`; returns the unsubscribe. */
  follow(v: Viewer): () => void {
    const offs = [
      v.on('update', ({ state }) => {
        this.playState = state;
        this.error = v.error;
        this.copyStats(v);
      }),
      v.on('cell', ({ track, index }) => {
        this.copyCell(v, track, index);
        this.copyStats(v);
      }),
      v.on('stats', () => this.copyStats(v)),
    ];
    return () => {
      for (const off of offs) off();
    };
  }

  private copyStats(v: Viewer): void {
    // The per-shard timings are for tests and benches; the page shows none.
    this.stats = { ...v.stats, fetchMs: [], transferMs: [] };
    this.rendition = v.currentRendition;
    if (v.map && this.renditionIds.length === 0) this.renditionIds = v.map.renditions.filter((r) => 'video' in r).map((r) => r.id);
    // The timeline appears in one go once the map has loaded (pending cells have no event of their own).
    if (this.cells.video.length !== v.cells.video.length || this.cells.audio.length !== v.cells.audio.length) {
      this.cells.video = v.cells.video.map((c) => ({ ...c, failures: [...c.failures] }));
      this.cells.audio = v.cells.audio.map((c) => ({ ...c, failures: [...c.failures] }));
    }
  }

  private copyCell(v: Viewer, track: Track, index: number): void {
    const c = v.cells[track][index];
    if (!c || this.cells[track].length !== v.cells[track].length) return; // copied whole by copyStats
    this.cells[track][index] = { ...c, failures: [...c.failures] };
  }
}
