/**
 * `npm start`: builds the web app when it is missing or older than its
 * sources, then serves everything on one port until SIGINT/SIGTERM.
 */
import fs from 'node:fs';
import path from 'node:path';
import { configHelp, loadConfig } from './config.ts';
import { startServer } from './server.ts';

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

/** True when dist/ is missing or any source of the app (src, public, vite config) is newer. */
export function needsBuild(root: string, distDir: string): boolean {
  const index = path.join(distDir, 'index.html');
  if (!fs.existsSync(index)) return true;
  const built = fs.statSync(index).mtimeMs;
  const inputs = [path.join(root, 'src'), path.join(root, 'public')].filter((d) => fs.existsSync(d));
  const newest = Math.max(fs.statSync(path.join(root, 'vite.config.ts')).mtimeMs, ...inputs.map(newestMtime));
  return newest > built;
}

export async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(
      `usage: npm start -- [options]\n\nOptions (flag, environment variable, default; description below each):\n${configHelp()}\n\nPORT and DATA_DIR are read too.`,
    );
    return;
  }
  const args = argv.filter((a) => a !== '--no-build');
  const config = loadConfig(args);
  const root = path.resolve(import.meta.dirname, '..');
  if (!argv.includes('--no-build') && needsBuild(root, config.distDir)) {
    console.log('building the web app (vite build)...');
    const { build } = await import('vite');
    await build({
      configFile: path.join(root, 'vite.config.ts'),
      root: path.join(root, 'src'),
      logLevel: 'warn',
      build: { outDir: config.distDir, emptyOutDir: true },
    });
  }
  const server = await startServer(config);
  const token = server.admin.source === 'config' ? 'the one you configured (--admin-token / SHARDCAST_ADMIN_TOKEN)' : `in ${server.admin.file}`;
  console.log(
    `\n  shardcast is running: ${server.url}\n  publish: ${server.url}/publish   encode: ${server.url}/encode   pool: ${server.url}/pool\n` +
      `  admin token (publishing, deleting): ${token}\n  e.g. npx shardcast publish video.mp4 --token "$(cat ${server.admin.file})"\n`,
  );
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log(`${sig}: shutting down`);
    server.close().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(e);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(`shardcast: ${(e as Error).message}`);
    process.exit(1);
  });
}
