/** GET /metrics in the Prometheus text format, from the pool's Views and Stats (never its internals). */
import type { ContentStore } from './ContentStore.ts';
import type { PoolManager } from './PoolManager.ts';

export function renderMetrics(pool: PoolManager, store: ContentStore): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: [Record<string, string>, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) {
      const l = Object.entries(labels)
        .map(([k, x]) => `${k}="${x.replace(/["\\\n]/g, '_')}"`)
        .join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${v}`);
    }
  };
  const { views, stats } = pool;
  const peers = views.peerCounts();
  metric('shardcast_peers', 'gauge', 'Connected tabs by role.', [
    [{ role: 'encoder' }, peers.encoder],
    [{ role: 'viewer' }, peers.viewer],
  ]);
  metric('shardcast_encoders_quarantined', 'gauge', 'Encoders in quarantine (no work, not offered to viewers).', [[{}, peers.quarantined]]);
  const byClass = views.jobsByClass();
  metric(
    'shardcast_jobs_in_flight',
    'gauge',
    'Jobs assigned and not finished, by class (live: near a playhead; start; background pre-encoding).',
    [...byClass].map(([k, v]) => [{ class: k }, v]),
  );
  const { byStatus: states, readyByHolders: replicas } = views.variants(5);
  metric(
    'shardcast_shard_variants',
    'gauge',
    'Shard variants (shard x rendition) by status.',
    [...states].map(([k, v]) => [{ status: k }, v]),
  );
  metric(
    'shardcast_shards_by_replicas',
    'gauge',
    'Ready shard variants by number of live holders (5 means 5 or more).',
    [...replicas].sort((a, b) => a[0] - b[0]).map(([k, v]) => [{ replicas: String(k) }, v]),
  );
  metric('shardcast_contents', 'gauge', 'Published contents.', [[{}, store.all().length]]);
  const c = stats.counters;
  metric('shardcast_jobs_assigned_total', 'counter', 'Jobs handed to encoders.', [[{}, c.jobsAssigned]]);
  metric('shardcast_jobs_completed_total', 'counter', 'Jobs finished.', [[{}, c.jobsCompleted]]);
  metric('shardcast_requeues_total', 'counter', 'Jobs whose unfinished shards went back to the queue.', [[{}, c.requeues]]);
  metric('shardcast_shards_accepted_total', 'counter', 'Shard variants accepted.', [[{}, c.shardsAccepted]]);
  metric('shardcast_shards_rejected_total', 'counter', 'Shard reports rejected.', [[{}, c.shardsRejected]]);
  metric('shardcast_locate_requests_total', 'counter', 'Holder look-ups by viewers.', [[{}, c.locates]]);
  metric('shardcast_bad_messages_total', 'counter', 'Invalid WebSocket messages received.', [[{}, c.badMessages]]);
  metric('shardcast_shard_requests_total', 'counter', 'Shards asked for by viewers (each locate counts its window).', [
    [{}, views.policyCounters().shardRequests],
  ]);
  metric('shardcast_replications_total', 'counter', 'Replicate orders sent (hot shards, busy holders, orphans with a cached copy).', [[{}, c.replications]]);
  metric('shardcast_replica_releases_total', 'counter', 'Replicas released after demand cooled.', [[{}, c.releases]]);
  metric('shardcast_preemptions_total', 'counter', 'Background jobs cancelled for live work.', [[{}, c.preemptions]]);
  metric('shardcast_quarantines_total', 'counter', 'Encoders put in quarantine.', [[{}, c.quarantines]]);
  metric('shardcast_peer_reports_total', 'counter', 'Reports about holders that counted (never a conviction on their own).', [[{}, c.peerReports]]);
  metric('shardcast_orphaned_shards_total', 'counter', 'Shard variants whose last holder left.', [[{}, c.orphans]]);
  const { trust: t, checksWaiting } = views.policyCounters();
  metric('shardcast_intake_checks_total', 'counter', 'Uploaded shards checked (structure, hash, size) before acceptance.', [[{}, c.intakeChecks]]);
  metric('shardcast_intake_check_seconds_total', 'counter', 'Time spent on those checks.', [[{}, c.intakeCheckMs / 1000]]);
  metric('shardcast_intake_bytes_total', 'counter', 'Bytes of shards checked.', [[{}, c.intakeBytes]]);
  metric('shardcast_intake_refused_total', 'counter', 'Uploaded shards that failed the structure check.', [[{}, c.intakeRefused]]);
  metric('shardcast_crosschecks_planned_total', 'counter', 'Jobs chosen to be encoded again by a second encoder of the same engine.', [[{}, t.checksPlanned]]);
  metric('shardcast_crosschecks_waiting', 'gauge', 'Cross-checks waiting for an able verifier.', [[{}, checksWaiting]]);
  metric('shardcast_shards_verified_total', 'counter', 'Shards whose hash a second encoder reproduced.', [[{}, t.shardsVerified]]);
  metric('shardcast_crosscheck_mismatches_total', 'counter', 'Shards where the second encoder differed (a third decides).', [[{}, t.mismatches]]);
  metric('shardcast_encoders_convicted_total', 'counter', 'Encoders found in the wrong by two others (quarantined).', [[{}, t.convicted]]);
  metric('shardcast_shards_revoked_total', 'counter', 'Unverified shards of convicted encoders taken back and encoded again.', [[{}, t.revoked]]);
  metric('shardcast_crosscheck_inconclusive_total', 'counter', 'Mismatches where three encodes gave three results.', [[{}, t.inconclusive]]);
  metric('shardcast_shards_unverifiable_total', 'counter', 'Shards sampled for a check that could not be compared (no encoder of the same engine and build).', [
    [{}, t.unverifiable],
  ]);
  const mem = process.memoryUsage();
  metric('shardcast_process_resident_bytes', 'gauge', 'Resident memory of the server.', [[{}, mem.rss]]);
  return lines.join('\n') + '\n';
}
