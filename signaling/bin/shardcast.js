#!/usr/bin/env node
// The `shardcast` command. The code is TypeScript, run through tsx's loader
// so that no separate compile step is needed.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('../cli.ts');
process.exitCode = await run(process.argv.slice(2));
