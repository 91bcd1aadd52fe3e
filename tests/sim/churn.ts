/**
 * A churn simulator: the real server (a child process, so its own CPU time and
 * memory can be read from /proc) driven by many simulated encoders and viewers
 * that speak the real WebSocket protocol from this one Node process.
 *
 * Nothing is encoded and no shard bytes exist. An encoder "encodes" a job by
 * waiting the job's content length divided by its speed, then reports every
 * shard with a hash all simulated encoders agree on (SHA-256 of the shard key),
 * so any two encoders of one shard agree like honest real ones. A viewer
 * "fetches" a shard by trying the holders the server listed in the order the
 * watch page tries them (src/viewer/Viewer.ts: the list shuffled, then peers
 * it already has a connection to first; at most maxPeers connections, the
 * least recently used closed) and counting a request against the first live
 * one, in process.
 *
 * Library: `runChurn(opts)` resolves to a ChurnReport; `formatReport` prints it.
 * CLI:     npx tsx tests/sim/churn.ts --encoders 200 --viewers 500 --contents 4 --seconds 120
 *          (every ChurnOptions field is a kebab-case flag; --server-arg X and
 *          --server-env K=V pass options to the server; --json prints the report as JSON).
 */
import path from 'node:path';
import { parseChurnArgs } from './churnCli.ts';
import { DEFAULT_CHURN_OPTIONS } from './churn/options.ts';
import { formatReport } from './churn/report.ts';
import { runChurn } from './churn/run.ts';

// The modules under churn/ own the pieces; this file keeps the public import path and the CLI.
export { DEFAULT_CHURN_OPTIONS, type ChurnOptions, type ChurnReport, type ContentLoad, type Dist, type LeaveKind } from './churn/options.ts';
export { formatReport } from './churn/report.ts';
export { runChurn } from './churn/run.ts';
export { dist, simSha } from './churn/util.ts';

// ---------------------------------------------------------------- CLI

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const { opts, json } = parseChurnArgs(process.argv.slice(2), DEFAULT_CHURN_OPTIONS);
  runChurn({ log: (l) => console.error(l), ...opts }).then(
    (r) => {
      console.log(json ? JSON.stringify(r, null, 2) : formatReport(r));
      process.exit(0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
