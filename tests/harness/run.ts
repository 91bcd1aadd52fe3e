/**
 * `npm test`: prepares what the tests need, then runs vitest inside a private
 * network namespace made for the run.
 *
 * 1. A browser: SHARDCAST_CHROMIUM, else /usr/bin/chromium, else (root on
 *    Debian) apt-get install chromium, else Playwright's own; else a clear error.
 * 2. Native ffmpeg/ffprobe for fixtures (the referee): likewise.
 * 3. The formatter and linter (Biome): unformatted code or a lint error fails the run.
 * 4. The web app, built once (vite build).
 * 5. vitest, in `unshare -n` with a veth pair and a default route, so WebRTC
 *    gathers a host candidate and no test traffic leaves the namespace. Without
 *    root: the host network, which must have an interface other than loopback.
 *
 * Everything that needs the network (apt) happens before the namespace.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findBrowser, NO_BROWSER_MESSAGE } from './browser.ts';

const root = path.resolve(import.meta.dirname, '../..');
// `npm run bench` reuses all of this with its own program in place of vitest.
const bench = process.argv[2] === '--bench';
const args = process.argv.slice(bench ? 3 : 2);
const label = bench ? 'npm run bench' : 'npm test';
const isRoot = process.getuid?.() === 0;
const isDebian = fs.existsSync('/etc/debian_version') && has('apt-get');

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function run(cmd: string, argv: string[], opts: SpawnSyncOptions = {}): number {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function fail(msg: string): never {
  console.error(`\n${label}: ${msg}\n`);
  process.exit(1);
}

let aptUpdated = false;
function aptInstall(pkgs: string[]): void {
  if (!aptUpdated) {
    run('apt-get', ['update', '-qq']);
    aptUpdated = true;
  }
  const code = run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (code !== 0) fail(`apt-get install ${pkgs.join(' ')} failed (exit ${code})`);
}

// 1. Browser.
let browser = findBrowser();
if (!browser && isRoot && isDebian) {
  console.log(`${label}: no Chromium found; installing Debian\'s chromium package`);
  aptInstall(['chromium']);
  browser = findBrowser();
}
if (!browser) fail(NO_BROWSER_MESSAGE);

// 2. The referee.
if (!has('ffmpeg') || !has('ffprobe')) {
  if (isRoot && isDebian) {
    console.log(`${label}: installing Debian\'s ffmpeg for test fixtures`);
    aptInstall(['ffmpeg']);
  } else {
    fail('the tests make their fixtures with native ffmpeg and check outputs with ffprobe: install ffmpeg (apt-get install ffmpeg)');
  }
}

// 3. The formatter and linter (Biome, biome.jsonc): unformatted code or a lint error fails the run, as a failing
// test would. Skipped with the build, since SHARDCAST_SKIP_BUILD=1 is for quick re-runs of a few files.
if (!bench && process.env.SHARDCAST_SKIP_BUILD !== '1') {
  if (run('npx', ['biome', 'ci', '--diagnostic-level=error'], { cwd: root }) !== 0) {
    fail('the formatter or the linter found problems: `npm run format` fixes the layout, `npm run lint` lists the rest');
  }
}

// 4. The app the server tests serve.
if (process.env.SHARDCAST_SKIP_BUILD !== '1') {
  if (run('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: root }) !== 0) fail('vite build failed');
}

// 5. vitest, in a namespace of our own where possible.
const env: NodeJS.ProcessEnv = { ...process.env, SHARDCAST_CHROMIUM: browser.path ?? '' };
const vitest = bench
  ? [path.join(root, 'node_modules/tsx/dist/cli.mjs'), path.join(root, 'tests/bench/suite.ts'), ...args]
  : [path.join(root, 'node_modules/.bin/vitest'), 'run', ...args];
const NETNS_SETUP = [
  'set -e',
  'ip link set lo up',
  'ip link add sc0 type veth peer name sc1',
  'ip addr add 10.213.0.1/24 dev sc0',
  'ip link set sc0 up',
  'ip link set sc1 up',
  'ip route add default via 10.213.0.2 dev sc0',
].join('\n');

function canUnshare(): boolean {
  if (!isRoot || !has('unshare') || !has('ip')) return false;
  return spawnSync('unshare', ['-n', 'sh', '-c', 'ip link add t0 type veth peer name t1'], { stdio: 'ignore' }).status === 0;
}

function hostHasRoute(): boolean {
  const external = Object.values(os.networkInterfaces())
    .flat()
    .some((a) => a && !a.internal && a.family === 'IPv4');
  const route = has('ip') ? spawnSync('ip', ['-4', 'route', 'show', 'default'], { encoding: 'utf8' }).stdout.trim() !== '' : external;
  return external && route;
}

let code: number;
if (process.env.SHARDCAST_NO_NETNS !== '1' && canUnshare()) {
  console.log(`${label}: private network namespace (10.213.0.1), browser ${browser.path ?? 'playwright'} (${browser.source})`);
  code = run('unshare', ['-n', 'sh', '-c', `${NETNS_SETUP}\nexec "$@"`, 'sh', process.execPath, ...vitest], {
    cwd: root,
    env: { ...env, SHARDCAST_NETNS: '1', SHARDCAST_HOST_IP: '10.213.0.1' },
  });
} else {
  if (!hostHasRoute()) {
    fail(
      'this host has no network interface but loopback (or no default route), so Chromium gathers no WebRTC candidates and every peer ' +
        'connection would fail. Run the tests as root (they make a private network namespace), or on a host with a non-loopback interface.',
    );
  }
  console.log(
    `${label}: host network (no private namespace: ${isRoot ? 'unshare unavailable' : 'not root'}), browser ${browser.path ?? 'playwright'} (${browser.source})`,
  );
  code = run(process.execPath, vitest, { cwd: root, env });
}
process.exit(code);
