/**
 * The real server as a child process: starting it for a run, stopping it, and
 * reading its CPU time and memory from /proc. Owns the server's data directory
 * and its captured error lines for the length of a run.
 */
import { pushExample } from './util.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serverCommand } from '../../harness/serverProcess.ts';
import type { ChurnOptions } from './options.ts';
import { sleep } from './util.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

export interface ServerProc {
  child: ChildProcess;
  url: string;
  dataDir: string;
  errorLines: string[];
  exit: string | null;
  tail: string[];
}

export const SIM_ADMIN_TOKEN = 'churn-sim-admin-token';

/** The server's command line for a run: `o`'s node flags and server flags around the simulation's fixed settings, data in `dataDir`. */
function serverArgs(o: ChurnOptions, dataDir: string): string[] {
  return [
    ...o.serverNodeArgs,
    ...serverCommand(dataDir),
    '--heartbeat-ms',
    String(o.heartbeatMs),
    '--heartbeat-timeout-ms',
    String(o.heartbeatTimeoutMs),
    // The simulation has no bytes to put in the cache, so the server should not count on it.
    '--cache-enabled',
    'false',
    // Nor bytes to check: the simulator-only knob that accepts shards on the encoder's word.
    '--verify-shard-bytes',
    'false',
    // Its encoders offer a made-up engine ('sim') that no check covers.
    '--schedule-unchecked-engines',
    'true',
    // No cross-checks either: they re-assign accepted shards on purpose, which this simulation counts as duplicates.
    '--verify-sample-rate',
    '0',
    '--verify-new-encoder-jobs',
    '0',
    // Every simulated tab connects from this one address, and publishes with the admin token.
    '--max-connections-per-ip',
    '0',
    '--admin-token',
    SIM_ADMIN_TOKEN,
    ...o.serverArgs,
  ];
}

/** Starts the real server (signaling/main.ts) as a child on a free port with a fresh data directory; resolves once it listens. Throws with its last output lines if it exits first or does not listen within 60 s. */
export async function startServerProcess(o: ChurnOptions): Promise<ServerProc> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-churn-'));
  const args = serverArgs(o, dataDir);
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...o.serverEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: ServerProc = { child, url: '', dataDir, errorLines: [], exit: null, tail: [] };
  const onLine = (line: string, stream: 'out' | 'err') => {
    proc.tail.push(line);
    if (proc.tail.length > 50) proc.tail.shift();
    // The server logs a caught handler failure and goes on; each one is a bug the run found.
    if (stream === 'err' || /failed:|Error|internal/.test(line)) pushExample(proc.errorLines, line, 30);
  };
  for (const [stream, name] of [
    [child.stdout!, 'out'],
    [child.stderr!, 'err'],
  ] as const) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i), name);
        buf = buf.slice(i + 1);
      }
    });
  }
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      proc.exit = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    }),
  );
  const deadline = Date.now() + 60_000;
  while (!proc.url) {
    const m = proc.tail.map((l) => /shardcast is running: (http:\/\/\S+)/.exec(l)).find((x) => x);
    if (m) proc.url = m[1]!.replace('localhost', '127.0.0.1');
    else if (proc.exit !== null) {
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the server exited (${proc.exit}) before listening:\n${proc.tail.join('\n')}`);
    } else if (Date.now() > deadline) {
      child.kill('SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the server did not start in 60 s:\n${proc.tail.join('\n')}`);
    } else await Promise.race([sleep(50), exited]);
  }
  return proc;
}

export async function stopServerProcess(s: ServerProc): Promise<void> {
  if (s.exit === null) {
    const gone = new Promise<void>((r) => s.child.once('exit', () => r()));
    s.child.kill('SIGTERM');
    await Promise.race([gone, sleep(5000)]);
    if (s.exit === null) {
      s.child.kill('SIGKILL');
      await gone;
    }
  }
}

/** Clock ticks per second in /proc/<pid>/stat: USER_HZ, 100 on every Linux architecture Node runs on. */
export const CLK_TCK = 100;

/** utime+stime of a process in seconds, and its resident set and high-water mark in bytes. */
export function procStats(pid: number): { cpu: number; rss: number; hwm: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { cpu, rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}
