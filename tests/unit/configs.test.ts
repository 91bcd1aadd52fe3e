/** Each config schema's defaults and sources: server (flags, environment, overrides), encoder and viewer (query), churn simulator (flags). */
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_CONFIG, loadConfig, SERVER_CONFIG } from '../../signaling/config.ts';
import { DEFAULT_ENCODER_CONFIG, encoderConfigFrom } from '../../src/encoder/config.ts';
import { DEFAULT_VIEWER_CONFIG, viewerConfigFrom } from '../../src/viewer/config.ts';
import { DEFAULT_CHURN_OPTIONS } from '../sim/churn.ts';
import { churnConfig, parseChurnArgs } from '../sim/churnCli.ts';

describe('server config', () => {
  it('has the documented defaults, with test hooks in their own sub-object', () => {
    expect(DEFAULT_CONFIG).toMatchObject({
      port: 8080,
      heartbeatTimeoutMs: 6000,
      maxUploadBytes: 2 * 2 ** 30,
      iceServers: [],
      trustProxy: false,
      verifyEngines: 'ffmpeg-wasm',
    });
    expect(DEFAULT_CONFIG.dataDir).toBe(path.resolve('data'));
    expect(DEFAULT_CONFIG.testHooks).toEqual({ verifyShardBytes: true, scheduleUncheckedEngines: false });
    expect('verifyShardBytes' in DEFAULT_CONFIG).toBe(false);
    expect('idleShareForBackground' in DEFAULT_CONFIG).toBe(false);
    expect(SERVER_CONFIG.option('verifyShardBytes')).toMatchObject({ flag: '--verify-shard-bytes', env: 'SHARDCAST_VERIFY_SHARD_BYTES' });
  });

  it('layers defaults, PORT/DATA_DIR, SHARDCAST_* variables, flags, then overrides', () => {
    const env = { PORT: '1', DATA_DIR: 'd1', SHARDCAST_DATA_DIR: 'd2', SHARDCAST_JOB_SECONDS: '4', SHARDCAST_VERIFY_SHARD_BYTES: 'false' };
    const c = loadConfig(['--job-seconds', '5', '--trust-proxy=true'], env, { log: false, testHooks: { verifyShardBytes: true } });
    expect(c).toMatchObject({ port: 1, dataDir: path.resolve('d2'), jobSeconds: 5, trustProxy: true, log: false, testHooks: { verifyShardBytes: true } });
    expect(loadConfig([], env).testHooks.verifyShardBytes).toBe(false);
    expect(DEFAULT_CONFIG.testHooks.verifyShardBytes).toBe(true);
  });

  it('fails with the option, the value and what it expects', () => {
    expect(() => loadConfig(['--port', 'abc'], {})).toThrow('--port: expected a non-negative number, got "abc"');
    expect(() => loadConfig([], { SHARDCAST_QUARANTINE_MS: '-5' })).toThrow('SHARDCAST_QUARANTINE_MS: expected a non-negative number, got "-5"');
    expect(() => loadConfig(['--ice-servers', '["stun:x"]'], {})).toThrow(
      /--ice-servers: expected a JSON array such as \[\{"urls":"stun:stun.example.org"\}\]/,
    );
    expect(() => loadConfig(['--idle-share-for-background', '0.5'], {})).toThrow(/unknown option --idle-share-for-background/);
    expect(() => loadConfig(['--heartbeat-ms', '7000'], {})).toThrow(/--heartbeat-timeout-ms \(6000\) must be larger than --heartbeat-ms \(7000\)/);
  });
});

describe('encoder config', () => {
  it('has its defaults, with the failure hook in testHooks', () => {
    expect(DEFAULT_ENCODER_CONFIG).toMatchObject({
      recycleAfterExecs: 20,
      watchdogMs: 20_000,
      preset: 'veryfast',
      ffmpegCore: 'single',
      persist: true,
      engines: 'ffmpeg-wasm,webcodecs',
    });
    expect(DEFAULT_ENCODER_CONFIG.testHooks).toEqual({ failEngine: '', failAfterFrames: 10 });
  });

  it('takes the hooks and the other settings from the query by their own names', () => {
    expect(encoderConfigFrom('?failEngine=webcodecs&failAfterFrames=3&persist=0&storeBudgetBytes=67108864')).toMatchObject({
      persist: false,
      storeBudgetBytes: 67108864,
      testHooks: { failEngine: 'webcodecs', failAfterFrames: 3 },
    });
  });

  it('ignores a malformed value with a console warning', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    expect(encoderConfigFrom('?watchdogMs=soon').watchdogMs).toBe(20_000);
    expect(warn).toHaveBeenCalledWith('ignoring watchdogMs=soon: expected a number');
    warn.mockRestore();
  });
});

describe('viewer config', () => {
  it('has its defaults and takes query overrides', () => {
    expect(DEFAULT_VIEWER_CONFIG).toMatchObject({ lookAheadSeconds: 6, maxConcurrentFetches: 4, cache: true, maxPeers: 8, startWaitMs: 10_000 });
    expect(viewerConfigFrom('?lookAheadSeconds=2&cache=0')).toMatchObject({ lookAheadSeconds: 2, cache: false, maxPeers: 8 });
  });

  it('ignores a malformed value with a console warning', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    expect(viewerConfigFrom('?maxPeers=many&cache=perhaps')).toMatchObject({ maxPeers: 8, cache: true });
    expect(warn).toHaveBeenCalledTimes(2);
    warn.mockRestore();
  });
});

describe('churn simulator options', () => {
  it('are flags for every number, boolean, string and list option, with the defaults of DEFAULT_CHURN_OPTIONS', () => {
    const c = churnConfig(DEFAULT_CHURN_OPTIONS);
    expect(c.defaults()).toMatchObject({ encoders: DEFAULT_CHURN_OPTIONS.encoders, fixtures: DEFAULT_CHURN_OPTIONS.fixtures, validate: true });
    expect(c.option('serverArgs')).toBeUndefined();
    expect(c.option('log')).toBeUndefined();
    for (const o of c.options) expect(o.description, o.key).not.toBe('');
  });

  it('parses the command line as before: negative numbers, comma lists, repeated server flags and K=V environment', () => {
    const r = parseChurnArgs(
      [
        '--batch-at',
        '-1',
        '--fixtures',
        'a,b',
        '--json',
        '--server-arg',
        '--quarantine-ms',
        '--server-arg',
        '5',
        '--server-env',
        'A=b=c',
        '--fetch-source',
        'yes',
      ],
      DEFAULT_CHURN_OPTIONS,
    );
    expect(r).toEqual({
      json: true,
      opts: { batchAt: -1, fixtures: ['a', 'b'], fetchSource: true, serverArgs: ['--quarantine-ms', '5'], serverEnv: { A: 'b=c' } },
    });
  });
});
