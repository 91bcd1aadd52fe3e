/**
 * Uploading one encoded shard for the server's intake check (and its cache):
 * the server accepts only bytes it has checked, so a job uploads each shard
 * before it reports it ready.
 */
import { apiUrl } from '../shared/api.ts';
import { fetchUnlessBusy } from './busyRetry.ts';
import type { Job } from '../shared/protocol.ts';

/** One shard of a job's output, as the upload needs it: `lead`/`tail` in samples (audio). */
export interface UploadableShard {
  index: number;
  bytes: Uint8Array;
  lead?: number;
  tail?: number;
}

/**
 * PUTs shard `s` of `job` to the server at `base` with the job's upload token.
 * Returns undefined when the server took it, else a line for the page's log
 * saying why not (refused, with the server's message, or not sent). Never throws.
 */
export async function uploadShard(base: string, job: Job, s: UploadableShard): Promise<string | undefined> {
  const url = new URL(apiUrl.shard({ contentId: job.contentId, rendition: job.rendition, index: s.index }, { lead: s.lead, tail: s.tail }), base);
  try {
    // The server bounds uploads at once per address (429): a tab behind a shared address waits its turn.
    const res = await fetchUnlessBusy(url, {
      method: 'PUT',
      body: s.bytes as Uint8Array<ArrayBuffer>,
      headers: { 'Content-Type': 'video/mp4', ...(job.uploadToken && { Authorization: `Bearer ${job.uploadToken}` }) },
    });
    if (res.ok) return undefined;
    return `server refused ${job.rendition}/${s.index}: ${(await res.text()).slice(0, 200)}`;
  } catch (e) {
    return `upload failed: ${(e as Error).message}`;
  }
}
