/**
 * The shard-variant key (one shard in one rendition of one content) and its
 * one string form, "contentId/rendition/index". The string form exists for
 * map keys and logs; code that needs the parts keeps the object.
 */

/** A shard variant: one shard in one rendition. `index` is the shard's position in the map (0-based). */
export interface VariantKey {
  contentId: string;
  rendition: string;
  index: number;
}

/** "contentId/rendition/index": content ids and rendition ids never hold a "/", so the form is unambiguous. */
export function variantKeyString(k: VariantKey): string {
  return `${k.contentId}/${k.rendition}/${k.index}`;
}

/** The inverse of variantKeyString; undefined when `s` is not of that form (the index must be a whole number). */
export function parseVariantKey(s: string): VariantKey | undefined {
  const j = s.lastIndexOf('/');
  const i = j > 0 ? s.lastIndexOf('/', j - 1) : -1;
  if (i <= 0 || j <= i + 1) return undefined;
  const index = s.slice(j + 1);
  if (!/^\d+$/.test(index)) return undefined;
  return { contentId: s.slice(0, i), rendition: s.slice(i + 1, j), index: Number(index) };
}

/** The string form of the content part, for prefix matching ("every variant of this content"). */
export function contentKeyPrefix(contentId: string): string {
  return `${contentId}/`;
}
