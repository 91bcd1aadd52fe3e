/// <reference types="vitest/config" />
import path from 'node:path';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { build, defineConfig, type Plugin } from 'vite';

const root = import.meta.dirname;

/**
 * Cross-origin isolation (COOP + COEP) on the dev server too: the multi-thread
 * ffmpeg core needs SharedArrayBuffer. The production server sends the same.
 */
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * The hls.js loader plug-in (src/hlsLoader) as one self-contained ES module,
 * dist/lib/shardcast-hlsjs.js, built after the app into the same output
 * directory (whatever outDir the build was given), so other sites can import
 * it from the shardcast server. hls.js itself is not in it: the page brings its own.
 */
function hlsjsPlugin(): Plugin {
  let outDir = '';
  return {
    name: 'shardcast-hlsjs-lib',
    apply: 'build',
    configResolved: (c) => void (outDir = c.build.outDir),
    async closeBundle() {
      await build({
        configFile: false,
        logLevel: 'warn',
        publicDir: false,
        build: {
          outDir: path.join(outDir, 'lib'),
          emptyOutDir: false,
          minify: true,
          lib: { entry: path.join(root, 'src/hlsLoader/index.ts'), formats: ['es'], fileName: () => 'shardcast-hlsjs.js' },
        },
      });
    },
  };
}

export default defineConfig({
  root: path.join(root, 'src'),
  publicDir: path.join(root, 'public'),
  plugins: [svelte(), hlsjsPlugin()],
  build: {
    outDir: path.join(root, 'dist'),
    emptyOutDir: true,
    // The ffmpeg core (.wasm, ~32 MB) is emitted as an asset of our own origin: never a CDN.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 2048,
  },
  worker: { format: 'es' },
  // The ffmpeg class spawns its worker from its own module URL; pre-bundling breaks that.
  optimizeDeps: { exclude: ['@ffmpeg/ffmpeg', '@ffmpeg/util'] },
  server: { headers: isolation, proxy: { '/api': 'http://localhost:8080', '/ws': { target: 'ws://localhost:8080', ws: true } } },
  preview: { headers: isolation },
  test: {
    root,
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['tests/unit/**/*.test.ts'], environment: 'node' },
      },
      {
        extends: true,
        test: { name: 'server', include: ['tests/server/**/*.test.ts'], environment: 'node', testTimeout: 60_000, hookTimeout: 60_000 },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['tests/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 300_000,
          hookTimeout: 180_000,
          // Two cores: browsers encoding in parallel test files would only slow each other down.
          fileParallelism: false,
        },
      },
    ],
  },
});
