#!/usr/bin/env node
// tsnet command line. `tsnet serve` runs the Docker plugin daemon in the foreground.

import { startDaemon } from '../core/runtime.js';

const USAGE = `usage: tsnet serve [--plugin-dir DIR] [--state-dir DIR] [--log-level LEVEL]
  --plugin-dir  where Docker looks for plugin sockets (default /run/docker/plugins)
  --state-dir   where the store lives (default /var/lib/tsnet)
  --log-level   fatal|error|warn|info|debug|trace (default info)`;

function parse(argv: string[]): { cmd: string; flags: Record<string, string> } {
  const [cmd = '', ...rest] = argv;
  const flags: Record<string, string> = {};
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const [k, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    const v = inline ?? rest[++i];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    flags[k] = v;
  }
  return { cmd, flags };
}

async function main(): Promise<number> {
  let args;
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.cmd !== 'serve') {
    console.error(USAGE);
    return args.cmd === 'help' || args.cmd === '--help' ? 0 : 2;
  }
  const known = new Set(['plugin-dir', 'state-dir', 'log-level']);
  const unknown = Object.keys(args.flags).filter((k) => !known.has(k));
  if (unknown.length) {
    console.error(`unknown option(s): ${unknown.map((k) => `--${k}`).join(', ')}\n${USAGE}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('tsnet serve needs root (CAP_NET_ADMIN to change networking, and access to /run/docker/plugins)');
    return 1;
  }
  const daemon = await startDaemon({
    pluginDir: args.flags['plugin-dir'] ?? '/run/docker/plugins',
    stateDir: args.flags['state-dir'] ?? '/var/lib/tsnet',
    logLevel: args.flags['log-level'] ?? 'info',
  });
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await daemon.stop();
  return 0;
}

process.exitCode = await main();
