import { describe, expect, it } from 'vitest';
import { DEFAULT_ENCODER_CONFIG, encoderConfigFrom } from '../../src/encoder/config.ts';

describe('encoder config from the query string', () => {
  it('runs the single-thread core unless the page asks for the multi-thread one', () => {
    expect(DEFAULT_ENCODER_CONFIG.ffmpegCore).toBe('single');
    expect(encoderConfigFrom('?ffmpegCore=multi').ffmpegCore).toBe('multi');
    expect(encoderConfigFrom('?ffmpegCore=multi&preset=faster')).toMatchObject({ ffmpegCore: 'multi', preset: 'faster' });
  });

  it('ignores a core it does not know, keeping the default', () => {
    expect(encoderConfigFrom('?ffmpegCore=gpu').ffmpegCore).toBe('single');
    expect(encoderConfigFrom('?ffmpegCore=').ffmpegCore).toBe('single');
  });
});
