/**
 * The globals src/shared may use: the ones both Node (>= 20) and browsers
 * provide. tsconfig.shared.json checks src/shared against ES2023 plus only
 * these, so DOM-only or Node-only code there fails the typecheck.
 */
declare var console: { log(...a: unknown[]): void; warn(...a: unknown[]): void; error(...a: unknown[]): void };
declare class TextDecoder {
  constructor(label?: string);
  decode(input?: ArrayBufferView | ArrayBuffer): string;
}
declare class TextEncoder {
  encode(input?: string): Uint8Array<ArrayBuffer>;
}
declare var crypto: {
  subtle: { digest(algorithm: 'SHA-256', data: ArrayBufferView<ArrayBuffer> | ArrayBuffer): Promise<ArrayBuffer> };
  getRandomValues<T extends ArrayBufferView>(array: T): T;
};
/** WebCodecs' byte source type (mediabunny's decoder configs carry one). */
type AllowSharedBufferSource = ArrayBufferLike | ArrayBufferView;
declare class URLSearchParams {
  constructor(init?: string | Record<string, string> | [string, string][]);
  append(name: string, value: string): void;
  set(name: string, value: string): void;
  get(name: string): string | null;
  has(name: string): boolean;
  toString(): string;
  readonly size: number;
}
