/**
 * The encode page's state, fed by the Encoder's `update` events: a copy of
 * its EncoderState that Svelte renders. The Encoder stays the owner.
 */
import type { Encoder, EncoderState } from '../encoder/Encoder.ts';

/** A copy deep enough that Svelte sees every change (the Encoder mutates its state in place). */
const snapshot = (st: EncoderState): EncoderState => ({ ...st, current: st.current && { ...st.current }, log: [...st.log] });

export class EncodeState {
  s: EncoderState;
  /** Why the encoder could not start, for the page. */
  fatal = $state<string | undefined>();

  constructor(encoder: Encoder) {
    this.s = $state.raw(snapshot(encoder.state));
    encoder.on('update', (st) => (this.s = snapshot(st)));
  }
}
