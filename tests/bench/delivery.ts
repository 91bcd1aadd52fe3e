import fs from 'node:fs';
import { launchBrowser, type TrackedPage } from '../harness/browser.ts';
import { fixture } from '../harness/fixtures.ts';
import { startTestServer, upload } from '../harness/testServer.ts';
import { type Bench, open, quantile, viewerStats, waitReady } from './common.ts';

/**
 * Shards already encoded by an encoder tab in one browser process; a viewer in
 * another. Time to first frame (from navigation), per-shard transfer latency
 * over open channels, and throughput of our protocol against a bare
 * RTCDataChannel, like for like: the same two pages (encoder tab sends, viewer
 * receives), 16 MiB per transfer in 64 KiB messages, both connections warmed
 * by one transfer first, each timed at the receiver from its request to the
 * last byte (ours also includes the SHA-256 check). The two alternate,
 * THROUGHPUT_REPS times each, and each figure is the median of its reps, so
 * a burst of load from elsewhere on the machine hits both alike.
 */
export const THROUGHPUT_BYTES = 16 * 2 ** 20;
export const THROUGHPUT_REPS = 3;

export const delivery: Bench = async () => {
  const server = await startTestServer({});
  const encB = await launchBrowser();
  const viewB = await launchBrowser();
  const pages: TrackedPage[] = [];
  try {
    const { json } = await upload(server.url, fs.readFileSync(await fixture('av-2997')));
    const enc = await open(encB, `${server.url}/encode?persist=0`, pages);
    await waitReady(server, json.id);
    const v = await open(viewB, `${server.url}/watch/${json.id}?cache=0`, pages);
    await v.page.waitForSelector('[data-state="ended"], [data-state="error"]', { timeout: 120_000 });
    const st = await viewerStats(v);
    if (st.fromPeers === 0) throw new Error('the viewer got nothing from peers');

    // Our protocol: one shard of THROUGHPUT_BYTES, chunked, backpressured, hash-verified at the end.
    const size = THROUGHPUT_BYTES;
    const key = { contentId: 'bench', rendition: 'blob', index: 0 };
    const sha = await enc.page.evaluate(
      async ({ key, size }) => {
        const bytes = new Uint8Array(size);
        for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
        const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        const sha = [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
        await (window as any).shardcastEncoder.store.put(key, sha, bytes);
        return sha;
      },
      { key, size },
    );
    const peerId = await enc.page.evaluate(() => (window as any).shardcastEncoder.state.peerId as string);
    const protocolMs = () =>
      v.page.evaluate(
        async ({ key, sha, peerId }) => {
          const t = await (window as any).shardcastViewer.transferTo(peerId);
          const t0 = performance.now();
          await t.fetch(key, sha, 120_000);
          return performance.now() - t0;
        },
        { key, sha, peerId },
      );
    const rawMs = await rawDataChannel(enc, v);

    await protocolMs();
    await rawMs(size);
    const proto: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < THROUGHPUT_REPS; i++) {
      proto.push(await protocolMs());
      raw.push(await rawMs(size));
    }
    const protoMBps = size / 2 ** 20 / (quantile(proto, 0.5) / 1000);
    const rawMBps = size / 2 ** 20 / (quantile(raw, 0.5) / 1000);
    const like = `16 MiB, 64 KiB messages, same two pages, warm, median of ${THROUGHPUT_REPS} alternating`;
    return [
      { metric: 'time to first frame (shards encoded, cache off)', unit: 'ms', value: st.firstFrameMs },
      { metric: 'shard transfer latency over an open channel, median', unit: 'ms', value: quantile(st.transferMs, 0.5) },
      { metric: 'shard transfer latency over an open channel, p95', unit: 'ms', value: quantile(st.transferMs, 0.95) },
      { metric: 'shard protocol throughput (16 MiB shard, hash checked)', unit: 'MB/s', value: protoMBps, note: like },
      { metric: 'raw RTCDataChannel throughput (same two pages)', unit: 'MB/s', value: rawMBps, note: like },
      { metric: 'shard protocol / raw data channel', unit: 'ratio', value: protoMBps / rawMBps },
    ];
  } finally {
    for (const p of pages) await p.context.close().catch(() => {});
    await encB.close();
    await viewB.close();
    await server.destroy();
  }
};

/**
 * A bare RTCDataChannel from page `from` to page `to`, on a connection of its
 * own signalled by this script (no trickle). Returns a function that times one
 * transfer at the receiver: it asks for `bytes` over the channel, the sender
 * answers with 64 KiB messages paced on bufferedAmount (4 MiB high, 1 MiB low:
 * more slack than our links allow themselves), and the time runs to the last byte.
 */
export async function rawDataChannel(from: TrackedPage, to: TrackedPage): Promise<(bytes: number) => Promise<number>> {
  // tsx compiles named functions with an __name helper, which page functions defining their own need.
  for (const t of [from, to]) await t.page.evaluate('window.__name ??= (f) => f');
  const gather = `(pc) => new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); else pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()); })`;
  const offer = await from.page.evaluate(async (gatherSrc) => {
    // biome-ignore lint/security/noGlobalEval: the page gets the helper's source text (a function cannot cross page.evaluate).
    const gather = eval(gatherSrc);
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel('raw', { ordered: true });
    dc.bufferedAmountLowThreshold = 1 << 20;
    const chunk = new Uint8Array(65536);
    dc.onmessage = async (e) => {
      for (let sent = 0; sent < Number(e.data); sent += chunk.length) {
        if (dc.bufferedAmount > 4 << 20) await new Promise((r) => dc.addEventListener('bufferedamountlow', r, { once: true }));
        dc.send(chunk);
      }
    };
    (window as any).rawBench = { pc, dc };
    await pc.setLocalDescription(await pc.createOffer());
    await gather(pc);
    return pc.localDescription!.toJSON();
  }, gather);
  const answer = await to.page.evaluate(
    async ({ offer, gatherSrc }) => {
      // biome-ignore lint/security/noGlobalEval: the page gets the helper's source text (a function cannot cross page.evaluate).
      const gather = eval(gatherSrc);
      const pc = new RTCPeerConnection({ iceServers: [] });
      const channel = new Promise<RTCDataChannel>((resolve) =>
        pc.addEventListener('datachannel', ({ channel }) => {
          channel.binaryType = 'arraybuffer';
          if (channel.readyState === 'open') resolve(channel);
          else channel.addEventListener('open', () => resolve(channel), { once: true });
        }),
      );
      (window as any).rawBench = {
        pc,
        transfer: async (want: number) => {
          const dc = await channel;
          return new Promise<number>((resolve) => {
            let got = 0;
            dc.onmessage = (e) => {
              got += (e.data as ArrayBuffer).byteLength;
              if (got >= want) resolve(performance.now() - t0);
            };
            const t0 = performance.now();
            dc.send(String(want));
          });
        },
      };
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription(await pc.createAnswer());
      await gather(pc);
      return pc.localDescription!.toJSON();
    },
    { offer, gatherSrc: gather },
  );
  await from.page.evaluate(async (answer) => {
    await ((window as any).rawBench.pc as RTCPeerConnection).setRemoteDescription(answer);
  }, answer);
  return (bytes) => to.page.evaluate((n) => (window as any).rawBench.transfer(n) as Promise<number>, bytes);
}
