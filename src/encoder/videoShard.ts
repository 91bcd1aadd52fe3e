/**
 * Owns the timing of a video shard's samples, for every engine: each frame at
 * its source time relative to the shard's first frame, each lasting until the
 * next frame, and the last one until the shard's end as the map says.
 *
 * Why the last duration comes from the map: an encoder knows a frame's
 * duration only from its successor, and a shard's last frame has none in the
 * shard. ffmpeg's segment muxer then writes one nominal frame (1/fps), so a
 * source that holds a frame (a paused screen recording: one frame for 1.5 s)
 * made a shard ending 1.5 s early, a hole in the viewer's buffer, and a
 * viewer stalled for good (issue 17). The map's `duration` runs to the next
 * shard's first frame, which is the held frame's true end.
 */
import { BufferSource, EncodedPacketSink, Input, MP4, type EncodedPacket, type VideoCodec } from 'mediabunny';
import { muxFragment } from '../shared/fragment.ts';
import { zeroMp4Times } from '../shared/mp4Times.ts';
import type { Job } from '../shared/protocol.ts';

export class VideoShardError extends Error {
  override name = 'VideoShardError';
}

type JobShard = Job['shards'][number];

/**
 * A self-contained fMP4 of one job shard from its packets in presentation
 * order, whose `timestamp`s (seconds, any origin) are the frames' source
 * times: rebased so the first frame is at 0, durations to the next frame and
 * the last to `shard.duration`. Throws VideoShardError when there is no packet
 * or the first is not a key frame. The frame count is left to the server's
 * check (validate.ts), which judges every engine's shards alike.
 */
export async function muxVideoShard(
  shard: JobShard,
  codec: VideoCodec,
  decoderConfig: VideoDecoderConfig,
  packets: readonly EncodedPacket[],
): Promise<Uint8Array> {
  if (packets[0]?.type !== 'key') throw new VideoShardError(`shard ${shard.index} does not start with a key frame`);
  const base = packets[0].timestamp;
  const timed = packets.map((p, k) => {
    const next = packets[k + 1];
    // 0.1 ms floor: a frame with no length is dropped by MSE.
    const duration = Math.max(1e-4, next ? next.timestamp - p.timestamp : shard.duration - (p.timestamp - base));
    return p.clone({ timestamp: p.timestamp - base, duration });
  });
  // Same job, same bytes: the cross-checks compare hashes.
  return zeroMp4Times(await muxFragment({ kind: 'video', codec, decoderConfig }, timed));
}

/**
 * Re-times one of ffmpeg's segment files (one shard, time from 0) by
 * muxVideoShard: same packets, same bytes of media, the last frame's duration
 * from the map. Throws VideoShardError when the file holds no readable video.
 */
export async function retimeSegment(bytes: Uint8Array, shard: JobShard): Promise<Uint8Array> {
  const input = new Input({ source: new BufferSource(bytes), formats: [MP4] });
  try {
    const track = await input.getPrimaryVideoTrack();
    if (!track) throw new VideoShardError(`ffmpeg's file for shard ${shard.index} has no video track`);
    const codec = await track.getCodec();
    const decoderConfig = await track.getDecoderConfig();
    if (!codec || !decoderConfig) throw new VideoShardError(`ffmpeg's file for shard ${shard.index} has no decoder configuration`);
    const packets: EncodedPacket[] = [];
    for await (const p of new EncodedPacketSink(track).packets()) packets.push(p);
    // Decode order as read: with -bf 0 (ffmpegArgs.ts) it is presentation order too.
    return await muxVideoShard(shard, codec, decoderConfig, packets);
  } finally {
    input.dispose();
  }
}
