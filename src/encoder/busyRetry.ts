/**
 * Owns one policy: how an encoder tab retries a request the server refused
 * for load rather than for what it asked (429 too-many-uploads, 503 busy: the
 * server bounds concurrent shard uploads and source slices). It waits the
 * server's Retry-After (1 s when absent, at most 10 s) and tries at most
 * BUSY_TRIES times in all; any other answer is returned as it is.
 */

/** Tries in all, the first included: about 30 s at most of waiting before the job fails like any other. */
export const BUSY_TRIES = 4;
const MAX_WAIT_S = 10;

const isBusy = (status: number) => status === 429 || status === 503;

/** Seconds to wait from a Retry-After header (delta-seconds; an HTTP date or nonsense counts as 1 s). */
export function retryAfterSeconds(header: string | null): number {
  if (header === null || header.trim() === '') return 1;
  const s = Number(header);
  return Number.isFinite(s) && s >= 0 ? Math.min(s, MAX_WAIT_S) : 1;
}

/**
 * fetch, retried while the server says it is busy. The body must be re-sendable (bytes, not a stream).
 * @throws whatever fetch throws, and the signal's reason when aborted while waiting.
 */
export async function fetchUnlessBusy(url: URL, init: RequestInit = {}): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(url, init);
    if (!isBusy(res.status) || attempt >= BUSY_TRIES) return res;
    await res.body?.cancel();
    const waitMs = retryAfterSeconds(res.headers.get('Retry-After')) * 1000;
    await new Promise<void>((resolve, reject) => {
      const signal = init.signal;
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, waitMs);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal?.reason);
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
