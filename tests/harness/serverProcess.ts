/**
 * The real server as a child process (signaling/main.ts), for tests that must
 * see it crash, be killed, or measure its memory from outside.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  dataDir: string;
  /** Every line the server wrote to stderr (a caught handler failure is logged there). */
  stderr: string[];
  /** Last lines of stdout and stderr, for error messages. */
  tail: string[];
  /** How it ended: `code N` or `signal S`; undefined while it runs. */
  exit: string | undefined;
  exited: Promise<void>;
}

/** Node's arguments that run the server (signaling/main.ts) on a free port of 127.0.0.1 with its data in `dataDir`, unbuilt. */
export function serverCommand(dataDir: string): string[] {
  return ['--import', 'tsx', path.join(ROOT, 'signaling/main.ts'), '--no-build', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir];
}

export async function spawnServer(dataDir: string, args: string[] = [], timeoutMs = 60_000): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...serverCommand(dataDir), '--schedule-unchecked-engines', 'true', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'test' },
  });
  const proc: ServerProcess = { child, url: '', dataDir, stderr: [], tail: [], exit: undefined, exited: Promise.resolve() };
  proc.exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      proc.exit = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    }),
  );
  for (const [stream, isErr] of [
    [child.stdout!, false],
    [child.stderr!, true],
  ] as const) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        proc.tail.push(line);
        if (proc.tail.length > 60) proc.tail.shift();
        if (isErr) proc.stderr.push(line);
      }
    });
  }
  const deadline = Date.now() + timeoutMs;
  while (!proc.url) {
    const m = proc.tail.map((l) => /shardcast is running: (http:\/\/\S+)/.exec(l)).find((x) => x);
    if (m) proc.url = m[1]!.replace('localhost', '127.0.0.1');
    else if (proc.exit !== undefined) throw new Error(`the server exited (${proc.exit}) before listening:\n${proc.tail.join('\n')}`);
    else if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server did not start in ${timeoutMs} ms:\n${proc.tail.join('\n')}`);
    } else await Promise.race([new Promise((r) => setTimeout(r, 25)), proc.exited]);
  }
  return proc;
}

/** SIGKILL: no shutdown handler runs, like a power cut for the process (the page cache survives). */
export async function killServer(p: ServerProcess): Promise<void> {
  if (p.exit === undefined) p.child.kill('SIGKILL');
  await p.exited;
}

export async function stopServer(p: ServerProcess): Promise<void> {
  if (p.exit !== undefined) return;
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(t);
}

/** Resident set now and its high-water mark, bytes (Linux /proc). */
export function memoryOf(p: ServerProcess): { rss: number; peak: number } | undefined {
  try {
    const status = fs.readFileSync(`/proc/${p.child.pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Connection-level failures a client sees when the server process dies under it (undici's fetch wraps them in `cause`). */
const KILL_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'UND_ERR_SOCKET']);

/**
 * Whether a fetch failure is the connection being cut (reset, refused, closed
 * mid-answer, "socket hang up"), as a killed server causes, rather than an
 * answer or a client-side fault. An HTTP status is never one of these.
 */
export function isKillError(e: unknown): boolean {
  for (let x: unknown = e, depth = 0; x && depth < 4; x = (x as { cause?: unknown }).cause, depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string' && KILL_CODES.has(code)) return true;
    if (/socket hang up|other side closed/i.test(String((x as Error).message))) return true;
  }
  return false;
}
