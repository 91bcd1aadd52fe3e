/**
 * Command-line flags for a ConfigSchema (the server's, the churn simulator's),
 * read with node:util parseArgs. Owns the flag syntax: `--name value` or
 * `--name=value` for every option (booleans too: `--trust-proxy true`), the
 * last occurrence winning, plus whatever extra flags a command declares.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { z } from 'zod';
import { ConfigError, type Assignment, type ConfigSchema } from '../src/shared/configSchema.ts';

type ExtraOptions = NonNullable<ParseArgsConfig['options']>;

export interface ParsedFlags {
  /** Config values in the order given. */
  assignments: Assignment[];
  /** Values of the command's extra flags, by name (`string[]` for `multiple`, `true` for a boolean). */
  extra: Record<string, string | boolean | (string | boolean)[] | undefined>;
}

/**
 * Parses `argv` (no program name) against the schema's options and `extra`.
 * Values may start with "-" (`--batch-at -1`), as a string option takes the
 * next argument whatever it is.
 * @throws ConfigError for an unknown flag (listing the known ones), a flag
 *   without a value, a positional argument, or a bad value (see ConfigSchema.parseValue).
 */
export function parseConfigFlags(cs: ConfigSchema<z.ZodObject>, argv: readonly string[], extra: ExtraOptions = {}): ParsedFlags {
  const options: ExtraOptions = { ...extra };
  for (const o of cs.options) options[o.flag.slice(2)] = { type: 'string' };
  // Not strict: strict mode refuses a value starting with "-", which the old parser took (negative numbers).
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const known = () => [...cs.options.map((o) => o.flag), ...Object.keys(extra).map((k) => `--${k}`)].join(' ');
  const assignments: Assignment[] = [];
  const extraValues: ParsedFlags['extra'] = {};
  for (const t of tokens) {
    if (t.kind === 'positional') throw new ConfigError(`unexpected argument ${t.value}; options: ${known()}`);
    if (t.kind === 'option-terminator') throw new ConfigError(`unexpected argument --; options: ${known()}`);
    const spec = extra[t.name];
    if (spec) {
      const v = spec.type === 'boolean' ? true : t.value;
      if (v === undefined) throw new ConfigError(`option ${t.rawName} needs a value`);
      if (spec.multiple) ((extraValues[t.name] ??= []) as (string | boolean)[]).push(v);
      else extraValues[t.name] = v;
      continue;
    }
    const option = cs.optionByFlag(`--${t.name}`);
    if (!option || t.rawName !== option.flag) throw new ConfigError(`unknown option ${t.rawName}; options: ${known()}`);
    if (t.value === undefined) throw new ConfigError(`option ${t.rawName} needs a value (${option.expects})`);
    assignments.push({ option, value: cs.parseValue(option, t.value, t.rawName) });
  }
  return { assignments, extra: extraValues };
}
