/**
 * Owns the one policy every config follows (server, encoder tab, viewer,
 * churn simulator): a zod object schema is the config's only definition, and
 * its option names, environment variables, defaults, descriptions and value
 * syntax are all derived from it here, so no config can drift from its --help.
 *
 * A config schema is a `z.object` whose fields each have `.default()` and
 * `.describe()`; a field may instead be a sub-object (with `.prefault({})` and
 * a description) whose fields are such leaves, to group options such as
 * test-only hooks. A leaf is known by its own key everywhere (flag, env,
 * query), so leaf keys must be unique across sub-objects.
 *
 * Isomorphic: no DOM or Node APIs (the flag parser, which needs node:util, is
 * signaling/configFlags.ts), so callers hand in their environment, their query
 * pairs and a warning sink.
 */
import { z } from 'zod';

/** How a raw string becomes a value: picked from the leaf's zod type. */
export type ValueSyntax = 'number' | 'boolean' | 'string' | 'enum' | 'list' | 'json';

/** One settable leaf of a config. */
export interface ConfigOption {
  /** The leaf's key, also its query parameter name, e.g. `heartbeatTimeoutMs`. */
  readonly key: string;
  /** Keys from the config root to the leaf, e.g. `['testHooks', 'verifyShardBytes']`. */
  readonly path: readonly string[];
  /** e.g. `--heartbeat-timeout-ms`. */
  readonly flag: string;
  /** e.g. `SHARDCAST_HEARTBEAT_TIMEOUT_MS`; undefined when the config has no environment prefix. */
  readonly env: string | undefined;
  /** Environment variables read before `env` (which wins), e.g. `PORT`. */
  readonly envAliases: readonly string[];
  readonly defaultValue: unknown;
  readonly description: string;
  readonly syntax: ValueSyntax;
  /** What a valid value looks like, for error messages ("a non-negative number"). */
  readonly expects: string;
  /** The leaf's schema without its default: what a coerced value must satisfy. */
  readonly schema: z.ZodType;
}

/** A value for one option, already coerced and validated. */
export interface Assignment {
  readonly option: ConfigOption;
  readonly value: unknown;
}

/** A bad option value or name; the message names the option, the value and what is expected. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface ConfigSchemaOptions {
  /** Prefix of every option's environment variable (`SHARDCAST_`); none: the config is not read from the environment. */
  envPrefix?: string;
  /** Extra environment variable names per leaf key, read before the prefixed one: `{ port: ['PORT'] }`. */
  envAliases?: Record<string, readonly string[]>;
}

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** A config: the schema, its flattened options, and the parsers and help text built from them. */
export class ConfigSchema<S extends z.ZodObject> {
  readonly options: readonly ConfigOption[];
  /** Descriptions of sub-objects by key, used as headings in the help text. */
  private readonly groups = new Map<string, string>();
  private readonly byKey = new Map<string, ConfigOption>();

  /** @throws Error when a field lacks a default or description, or two leaves share a key (a bug in the schema). */
  constructor(
    readonly schema: S,
    private readonly opts: ConfigSchemaOptions = {},
  ) {
    this.options = this.flatten(schema, []);
    for (const o of this.options) {
      if (this.byKey.has(o.key)) throw new Error(`config schema: two options named ${o.key}`);
      this.byKey.set(o.key, o);
    }
  }

  /** Every option at its default (a fresh object each call). */
  defaults(): z.output<S> {
    return this.schema.parse({});
  }

  /** The option whose leaf key is `key`, or undefined. */
  option(key: string): ConfigOption | undefined {
    return this.byKey.get(key);
  }

  /** The option whose flag is `flag` (`--port`), or undefined. */
  optionByFlag(flag: string): ConfigOption | undefined {
    return this.options.find((o) => o.flag === flag);
  }

  /**
   * Coerces and validates one raw string for `option`; `source` names where it
   * came from (`--port`, `SHARDCAST_PORT`) for the error.
   * @throws ConfigError `--port: expected a non-negative number, got "abc"`
   */
  parseValue(option: ConfigOption, raw: string, source: string = option.flag): unknown {
    const r = coerce(option, raw);
    if (!r.ok) throw new ConfigError(`${source}: expected ${r.expected}, got ${JSON.stringify(raw)}`);
    return r.value;
  }

  /**
   * Values from environment variables: for each option its aliases, then its
   * prefixed name (so the prefixed one wins); empty variables are skipped.
   * @throws ConfigError naming the variable, its value and what is expected.
   */
  fromEnv(env: Readonly<Record<string, string | undefined>>): Assignment[] {
    const out: Assignment[] = [];
    for (const option of this.options) {
      for (const name of [...option.envAliases, ...(option.env ? [option.env] : [])]) {
        const raw = env[name];
        if (raw !== undefined && raw !== '') out.push({ option, value: this.parseValue(option, raw, name) });
      }
    }
    return out;
  }

  /**
   * Values from URL query pairs named by leaf key (`new URLSearchParams(search)`).
   * Unknown names are skipped; a bad value is skipped after `warn("ignoring k=v: expected ...")`,
   * so a mistyped link still opens the page with defaults.
   */
  fromQuery(pairs: Iterable<[string, string]>, warn: (message: string) => void): Assignment[] {
    const out: Assignment[] = [];
    for (const [key, raw] of pairs) {
      const option = this.byKey.get(key);
      if (!option) continue;
      const r = coerce(option, raw);
      if (r.ok) out.push({ option, value: r.value });
      else warn(`ignoring ${key}=${raw}: expected ${r.expected}`);
    }
    return out;
  }

  /** A copy of `base` with the assignments applied in order, later ones winning (`base` is not changed). */
  apply(base: z.output<S>, assignments: readonly Assignment[]): z.output<S> {
    // Values are replaced, never mutated, so copying the root and each sub-object is a deep enough copy.
    const out: Record<string, unknown> = { ...base };
    for (const g of this.groups.keys()) out[g] = { ...(out[g] as object) };
    for (const { option, value } of assignments) {
      let obj = out;
      for (const k of option.path.slice(0, -1)) obj = obj[k] as Record<string, unknown>;
      obj[option.key] = value;
    }
    return out as z.output<S>;
  }

  /**
   * `--help` lines: per option its flag, environment variable (if any) and
   * default as JSON on one line, its description indented on the next; the
   * options of each sub-object follow the top-level ones, under its description.
   */
  help(): string {
    const lines: string[] = [];
    let group = '';
    // Top-level options first, so each sub-object's heading appears once.
    const ordered = [...this.options.filter((o) => o.path.length === 1), ...this.options.filter((o) => o.path.length > 1)];
    for (const o of ordered) {
      const g = o.path.length > 1 ? o.path[0]! : '';
      if (g !== group) {
        group = g;
        lines.push('', `  ${this.groups.get(g)}:`);
      }
      const env = this.opts.envPrefix === undefined ? '' : `${(o.env ?? '').padEnd(40)} `;
      lines.push(`  ${o.flag.padEnd(30)} ${env}default ${JSON.stringify(o.defaultValue)}`);
      lines.push(`      ${o.description}`);
    }
    return lines.join('\n');
  }

  private flatten(obj: z.ZodObject, parent: readonly string[]): ConfigOption[] {
    const out: ConfigOption[] = [];
    for (const [key, field] of Object.entries(obj.shape) as [string, z.ZodType][]) {
      const path = [...parent, key];
      const description = field.description;
      if (!description) throw new Error(`config schema: ${path.join('.')} has no .describe()`);
      if (field instanceof z.ZodPrefault && field.def.innerType instanceof z.ZodObject && parent.length === 0) {
        this.groups.set(key, description);
        out.push(...this.flatten(field.def.innerType, path));
        continue;
      }
      if (!(field instanceof z.ZodDefault)) throw new Error(`config schema: ${path.join('.')} has no .default()`);
      const schema = field.def.innerType as z.ZodType;
      const syntax = syntaxOf(schema);
      const prefixed = this.opts.envPrefix === undefined ? undefined : `${this.opts.envPrefix}${kebab(key).replace(/-/g, '_').toUpperCase()}`;
      out.push({
        key,
        path,
        flag: `--${kebab(key)}`,
        env: prefixed,
        envAliases: this.opts.envAliases?.[key] ?? [],
        defaultValue: field.parse(undefined),
        description,
        syntax,
        expects: (field.meta()?.expects as string | undefined) ?? expectsOf(schema, syntax),
        schema,
      });
    }
    return out;
  }
}

const TRUE = /^(1|true|yes|on)$/i;
const FALSE = /^(0|false|no|off)$/i;

/** `raw` as `option`'s value, or what was expected instead (with zod's detail for structured values). */
function coerce(option: ConfigOption, raw: string): { ok: true; value: unknown } | { ok: false; expected: string } {
  let value: unknown = raw;
  switch (option.syntax) {
    case 'number':
      value = raw.trim() === '' ? NaN : Number(raw);
      break;
    case 'boolean':
      value = TRUE.test(raw) ? true : FALSE.test(raw) ? false : undefined;
      break;
    case 'list':
      value = raw.split(',');
      break;
    case 'json':
      try {
        value = JSON.parse(raw);
      } catch {
        return { ok: false, expected: `${option.expects} (not valid JSON)` };
      }
  }
  const r = option.schema.safeParse(value);
  if (r.success) return { ok: true, value: r.data };
  const issue = r.error.issues[0];
  const detail = option.syntax === 'json' && issue ? ` (${issue.path.length ? `at ${issue.path.join('.')}: ` : ''}${issue.message})` : '';
  return { ok: false, expected: option.expects + detail };
}

function syntaxOf(schema: z.ZodType): ValueSyntax {
  if (schema instanceof z.ZodNumber) return 'number';
  if (schema instanceof z.ZodBoolean) return 'boolean';
  if (schema instanceof z.ZodString) return 'string';
  if (schema instanceof z.ZodEnum) return 'enum';
  if (schema instanceof z.ZodArray && (schema.element instanceof z.ZodString || schema.element instanceof z.ZodEnum)) return 'list';
  return 'json';
}

function expectsOf(schema: z.ZodType, syntax: ValueSyntax): string {
  switch (syntax) {
    case 'number': {
      const n = schema as z.ZodNumber;
      const kind = n.isInt ? 'an integer' : 'a number';
      return n.minValue === 0 ? `${kind.replace(/^an? /, 'a non-negative ')}` : kind;
    }
    case 'boolean':
      return 'true or false (or 1/0, yes/no, on/off)';
    case 'enum':
      return `one of ${(schema as z.ZodEnum).options.map((o) => JSON.stringify(o)).join(', ')}`;
    case 'list':
      return 'a comma-separated list';
    case 'json':
      return 'JSON';
    default:
      return 'a string';
  }
}
