/** The shared config helper: defaults, environment, flags, query parameters, bad values and --help from one zod schema. */
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ConfigError, ConfigSchema } from '../../src/shared/configSchema.ts';
import { parseConfigFlags } from '../../signaling/configFlags.ts';

const schema = z.object({
  port: z.number().nonnegative().default(8080).describe('TCP port.'),
  rate: z.number().default(0.5).describe('A rate.'),
  name: z.string().default('x').describe('A name.'),
  on: z.boolean().default(true).describe('A switch.'),
  core: z.enum(['single', 'multi']).default('single').describe('A core.'),
  tags: z.array(z.string()).default(['a']).describe('Tags.'),
  servers: z
    .array(z.object({ urls: z.string() }))
    .default([])
    .meta({ expects: 'a JSON array of {"urls": ...}' })
    .describe('Servers.'),
  testHooks: z
    .object({ failAfter: z.number().default(10).describe('Fail after this many.') })
    .prefault({})
    .describe('Test hooks'),
});
const cs = new ConfigSchema(schema, { envPrefix: 'APP_', envAliases: { port: ['PORT'] } });

describe('ConfigSchema', () => {
  it('flattens options with flag, environment name, default and description; sub-object leaves keep their own names', () => {
    expect(cs.options.map((o) => o.flag)).toEqual(['--port', '--rate', '--name', '--on', '--core', '--tags', '--servers', '--fail-after']);
    expect(cs.option('failAfter')).toMatchObject({
      path: ['testHooks', 'failAfter'],
      env: 'APP_FAIL_AFTER',
      defaultValue: 10,
      description: 'Fail after this many.',
    });
    expect(cs.option('port')).toMatchObject({ env: 'APP_PORT', envAliases: ['PORT'], expects: 'a non-negative number' });
    expect(cs.defaults()).toEqual({ port: 8080, rate: 0.5, name: 'x', on: true, core: 'single', tags: ['a'], servers: [], testHooks: { failAfter: 10 } });
  });

  it('refuses a schema field without a default or a description, and two leaves with one key', () => {
    expect(() => new ConfigSchema(z.object({ a: z.number().describe('no default') }))).toThrow(/a has no .default\(\)/);
    expect(() => new ConfigSchema(z.object({ a: z.number().default(1) }))).toThrow(/a has no .describe\(\)/);
    const dup = z.object({
      a: z.number().default(1).describe('a'),
      h: z
        .object({ a: z.number().default(2).describe('a') })
        .prefault({})
        .describe('h'),
    });
    expect(() => new ConfigSchema(dup)).toThrow(/two options named a/);
  });

  it('reads the environment: aliases first, the prefixed name wins, empty variables are skipped', () => {
    const env = (e: Record<string, string>) => cs.apply(cs.defaults(), cs.fromEnv(e));
    expect(env({ PORT: '1' }).port).toBe(1);
    expect(env({ PORT: '1', APP_PORT: '2' }).port).toBe(2);
    expect(env({ PORT: '', APP_ON: 'off', APP_FAIL_AFTER: '3', APP_TAGS: 'b,c' })).toMatchObject({
      port: 8080,
      on: false,
      tags: ['b', 'c'],
      testHooks: { failAfter: 3 },
    });
    expect(() => cs.fromEnv({ APP_PORT: '-1' })).toThrow(new ConfigError('APP_PORT: expected a non-negative number, got "-1"'));
  });

  it('coerces each syntax and names the option, the value and what it expects when it cannot', () => {
    const v = (key: string, raw: string) => cs.parseValue(cs.option(key)!, raw);
    expect(v('rate', '-1.5')).toBe(-1.5);
    expect(v('on', 'YES')).toBe(true);
    expect(v('on', '0')).toBe(false);
    expect(v('core', 'multi')).toBe('multi');
    expect(v('servers', '[{"urls":"stun:x"}]')).toEqual([{ urls: 'stun:x' }]);
    expect(() => v('port', 'abc')).toThrow('--port: expected a non-negative number, got "abc"');
    expect(() => v('rate', '')).toThrow('--rate: expected a number, got ""');
    expect(() => v('rate', 'Infinity')).toThrow(/expected a number/);
    expect(() => v('on', 'maybe')).toThrow('--on: expected true or false (or 1/0, yes/no, on/off), got "maybe"');
    expect(() => v('core', 'gpu')).toThrow('--core: expected one of "single", "multi", got "gpu"');
    expect(() => v('servers', '{')).toThrow('--servers: expected a JSON array of {"urls": ...} (not valid JSON), got "{"');
    expect(() => v('servers', '[{"url":"x"}]')).toThrow(/--servers: expected a JSON array of \{"urls": \.\.\.\} \(at 0\.urls: .+\), got/);
  });

  it('applies values onto a copy of the base, leaving the base and its sub-objects alone', () => {
    const base = cs.defaults();
    const out = cs.apply(base, [
      { option: cs.option('failAfter')!, value: 1 },
      { option: cs.option('port')!, value: 1 },
      { option: cs.option('port')!, value: 2 },
    ]);
    expect(out).toMatchObject({ port: 2, testHooks: { failAfter: 1 } });
    expect(base).toMatchObject({ port: 8080, testHooks: { failAfter: 10 } });
  });

  it('reads query pairs by leaf key: unknown names skipped, bad values ignored with a warning', () => {
    const warn = vi.fn();
    const q = (search: string) => cs.apply(cs.defaults(), cs.fromQuery(new URLSearchParams(search), warn));
    expect(q('?port=1&failAfter=2&on=0&core=multi&toString=x&other=1')).toMatchObject({ port: 1, on: false, core: 'multi', testHooks: { failAfter: 2 } });
    expect(warn).not.toHaveBeenCalled();
    expect(q('?port=abc&core=gpu&rate=1')).toMatchObject({ port: 8080, core: 'single', rate: 1 });
    expect(warn.mock.calls).toEqual([['ignoring port=abc: expected a non-negative number'], ['ignoring core=gpu: expected one of "single", "multi"']]);
  });

  it('generates --help: flag, environment variable and JSON default on one line, the description under it, sub-objects under a heading', () => {
    const lines = cs.help().split('\n');
    expect(lines[0]).toMatch(/^ {2}--port +APP_PORT +default 8080$/);
    expect(lines[1]).toBe('      TCP port.');
    expect(lines).toContain('  Test hooks:');
    expect(lines.at(-2)).toMatch(/^ {2}--fail-after +APP_FAIL_AFTER +default 10$/);
    // A sub-object declared first is still listed after the top-level options, under one heading.
    const first = new ConfigSchema(
      z.object({
        h: z
          .object({ a: z.number().default(1).describe('A.') })
          .prefault({})
          .describe('Hooks'),
        b: z.number().default(2).describe('B.'),
      }),
    );
    expect(
      first
        .help()
        .split('\n')
        .filter((l) => !l.startsWith('      ')),
    ).toEqual(['  --b                            default 2', '', '  Hooks:', '  --a                            default 1']);
    // Without an environment prefix there is no environment column.
    const plain = new ConfigSchema(z.object({ n: z.number().default(1).describe('N.') })).help();
    expect(plain).toMatch(/^ {2}--n +default 1\n {6}N\.$/);
  });
});

describe('parseConfigFlags', () => {
  const flags = (argv: string[], extra = {}) => parseConfigFlags(cs, argv, extra);
  const values = (argv: string[]) => cs.apply(cs.defaults(), flags(argv).assignments);

  it('takes --name value and --name=value, values starting with "-", the last occurrence winning', () => {
    expect(values(['--port', '1', '--rate=-2', '--name', '--odd', '--port', '3', '--fail-after', '4'])).toMatchObject({
      port: 3,
      rate: -2,
      name: '--odd',
      testHooks: { failAfter: 4 },
    });
  });

  it('refuses unknown flags, missing values, positionals and bad values with the option named', () => {
    expect(() => flags(['--nope', '1'])).toThrow(/^unknown option --nope; options: --port --rate/);
    expect(() => flags(['-p'])).toThrow(/^unknown option -p/);
    expect(() => flags(['--port'])).toThrow('option --port needs a value (a non-negative number)');
    expect(() => flags(['stray'])).toThrow(/^unexpected argument stray/);
    expect(() => flags(['--on', 'maybe'])).toThrow(ConfigError);
  });

  it("returns a command's extra flags: booleans, repeated strings", () => {
    const extra = { json: { type: 'boolean' }, arg: { type: 'string', multiple: true } } as const;
    const r = flags(['--json', '--arg', '--x', '--port', '1', '--arg', 'y'], extra);
    expect(r.extra).toEqual({ json: true, arg: ['--x', 'y'] });
    expect(r.assignments.map((a) => a.value)).toEqual([1]);
  });
});
