import { describe, expect, it } from 'vitest';
import { parseVariantKey, variantKeyString } from '../../../src/shared/variantKey.ts';
import { shardKeyString } from '../../../src/shared/shardMap.ts';

describe('variant keys', () => {
  it('round-trips through the one string form', () => {
    const k = { contentId: 'abc', rendition: '180p', index: 12 };
    expect(variantKeyString(k)).toBe('abc/180p/12');
    expect(shardKeyString(k)).toBe('abc/180p/12');
    expect(parseVariantKey('abc/180p/12')).toEqual(k);
  });

  it('refuses strings that are not keys', () => {
    for (const s of ['', 'abc', 'abc/180p', 'abc/180p/x', '/180p/1', 'abc//1', 'abc/180p/1.5', 'abc/180p/']) expect(parseVariantKey(s)).toBeUndefined();
  });
});
