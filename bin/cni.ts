#!/usr/bin/env node
// CNI plugin entry: `cni.js TYPE` with the CNI environment and stdin (installed as one wrapper
// per type by `tsnet cni install`). The protocol lives in cni/dispatch.ts.

import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { runCni, type PluginType } from '../cni/dispatch.js';
import { openCniRuntime } from '../core/cni-runtime.js';

const type = (process.argv[2] ?? '') as PluginType;
if (!['tsbridge', 'tsipam', 'tsmacvlan', 'tsoverlay'].includes(type)) {
  process.stdout.write(JSON.stringify({ cniVersion: '1.1.0', code: 7, msg: `unknown tsnet plugin type ${JSON.stringify(type)}` }));
  process.exit(1);
}
// A standalone call may create the store: root-only, like the daemon's.
process.umask(0o077);
let stdin = '';
try {
  stdin = readFileSync(0, 'utf8');
} catch {
  // VERSION and STATUS may come without stdin
}
const log = pino({ level: process.env.TSNET_LOG_LEVEL ?? 'warn' }, pino.destination(2));
let close: (() => Promise<void>) | undefined;
process.exitCode = await runCni(type, { env: process.env, stdin, out: (t) => process.stdout.write(t) }, async () => {
  const rt = await openCniRuntime(process.env.TSNET_STATE_DIR ?? '/var/lib/tsnet', log);
  close = rt.close;
  return rt;
});
await close?.();
