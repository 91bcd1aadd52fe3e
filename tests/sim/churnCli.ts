/**
 * The churn simulator's command line: a zod config schema built from
 * DEFAULT_CHURN_OPTIONS (so every option added there is a kebab-case flag at
 * once, with its type and default) and described from CHURN_OPTION_HELP, read
 * through the shared config helpers like the server's. Owns the extra flags
 * that are not options (--json, --server-arg, --server-env, --server-node-arg).
 */
import { z } from 'zod';
import { ConfigError, ConfigSchema } from '../../src/shared/configSchema.ts';
import { parseConfigFlags } from '../../signaling/configFlags.ts';
import type { ChurnOptions } from './churn.ts';

/** Options set by their own repeatable flags, or only from code. */
const NOT_FLAGS = new Set(['serverArgs', 'serverEnv', 'serverNodeArgs', 'log']);

/** One line per option for --help; the full story is ChurnOptions' doc comments in churn.ts. */
const CHURN_OPTION_HELP: Partial<Record<keyof ChurnOptions, string>> = {
  encoders: 'Encoders at the start, and the size joins keep the pool near.',
  viewers: 'Viewers over the run.',
  contents: 'Contents published before anyone joins, alternating between --fixtures.',
  publishEverySeconds: 'Wall seconds between further uploads in the first three quarters of the run (0: none).',
  fixtures: 'Fixtures the contents are made from, in turn (comma-separated).',
  seconds: 'Length of the churn and viewing phase, wall seconds.',
  settleSeconds: 'Wall seconds allowed after the phase for the pool to finish and repair.',
  timeScale: 'Simulated seconds per wall second for encoding, copying and playback.',
  speedMin: 'Slowest encoder, content seconds encoded per simulated second.',
  speedMax: 'Fastest encoder, content seconds encoded per simulated second.',
  churnPerMin: 'Share of the pool leaving per minute (Poisson); joins keep the size.',
  silentFraction: 'Share of departures that go silent rather than closing.',
  rejoinFraction: 'Share of closing departures that come back with the same peer id (a reload).',
  batchAt: 'Wall seconds after the start when a batch leaves at once; negative for none.',
  batchFraction: 'Share of the live pool in the batch.',
  batchSilentFraction: 'Share of the batch that goes silent rather than closing.',
  heartbeatMs: 'Server heartbeat period, ms.',
  heartbeatTimeoutMs: 'Server heartbeat timeout, ms.',
  lookAheadSeconds: "Viewers' look-ahead, seconds (as the watch page's).",
  locateEveryMs: 'Viewers locate holders this often, ms.',
  maxPeers: 'Peer connections a viewer keeps at once, least recently used closed first.',
  missingGraceMs: 'A shard nobody can provide is waited for this long before it is skipped, wall ms.',
  startWaitMs: 'Before the first shard plays, it is waited for this long, wall ms.',
  viewerStart: 'Wall seconds after the start when viewers begin to join.',
  viewerRamp: 'Wall seconds over which viewers arrive.',
  zipf: 'Content popularity: content i has weight 1/(i+1)^zipf (0: uniform).',
  transferMs: 'Simulated ms one served request keeps a holder busy.',
  copyMs: 'Simulated ms a replicate copy takes.',
  fetchSource: "Encoders GET their job's source slice first, as real ones do.",
  validate: "Validate every server message with the protocol's zod schema (costs sim CPU).",
  shardDuration: "Shard duration asked for at upload, seconds (0: the server's default).",
  seed: "Seed of the simulation's choices.",
  keepDataDir: "Keep the server's data directory after the run.",
};

/** A leaf schema for a default's type: numbers, booleans, strings and string lists are flags. */
function leafFor(def: unknown): z.ZodType | undefined {
  if (typeof def === 'number') return z.number();
  if (typeof def === 'boolean') return z.boolean();
  if (typeof def === 'string') return z.string();
  if (Array.isArray(def)) return z.array(z.string());
  return undefined;
}

/** The simulator's config schema, from its defaults (passed in: churn.ts imports this module). */
export function churnConfig(defaults: ChurnOptions): ConfigSchema<z.ZodObject> {
  const shape: Record<string, z.ZodType> = {};
  for (const [k, def] of Object.entries(defaults)) {
    const leaf = NOT_FLAGS.has(k) ? undefined : leafFor(def);
    if (!leaf) continue;
    const help = CHURN_OPTION_HELP[k as keyof ChurnOptions] ?? 'See ChurnOptions in tests/sim/churn.ts.';
    shape[k] = leaf.default(def as never).describe(help);
  }
  return new ConfigSchema(z.object(shape));
}

const EXTRA_FLAGS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  'server-arg': { type: 'string', multiple: true },
  'server-env': { type: 'string', multiple: true },
  'server-node-arg': { type: 'string', multiple: true },
} as const;

/**
 * Options from the command line (argv without the program name). Prints --help
 * and exits 0; an unknown flag or a bad value is printed (naming the flag and
 * what it expects) and exits 2.
 */
export function parseChurnArgs(argv: readonly string[], defaults: ChurnOptions): { opts: Partial<ChurnOptions>; json: boolean } {
  const config = churnConfig(defaults);
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(
      `usage: npx tsx tests/sim/churn.ts [--json] [--server-arg FLAG]... [--server-env K=V]... [--server-node-arg FLAG]... [options]\n\noptions (default; description below each):\n${config.help()}`,
    );
    process.exit(0);
  }
  let parsed: ReturnType<typeof parseConfigFlags>;
  try {
    parsed = parseConfigFlags(config, argv, EXTRA_FLAGS);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`churn: ${e.message}`);
    process.exit(2);
  }
  const { assignments, extra } = parsed;
  const opts: Partial<ChurnOptions> = {};
  for (const { option, value } of assignments) (opts as Record<string, unknown>)[option.key] = value;
  const list = (name: keyof typeof EXTRA_FLAGS) => (extra[name] ?? []) as string[];
  if (list('server-arg').length) opts.serverArgs = list('server-arg');
  if (list('server-node-arg').length) opts.serverNodeArgs = list('server-node-arg');
  if (list('server-env').length) opts.serverEnv = Object.fromEntries(list('server-env').map((kv) => [kv.split('=')[0]!, kv.split('=').slice(1).join('=')]));
  return { opts, json: extra.json === true };
}
