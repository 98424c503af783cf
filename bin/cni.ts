#!/usr/bin/env node
// CNI plugin entry: `cni.js TYPE` with the CNI environment and stdin (installed as one wrapper
// per type by `tsnet cni install`). The protocol lives in cni/dispatch.ts.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pino } from 'pino';
import { runCni, type PluginType } from '../cni/dispatch.js';
import { CNI_CODES, CniError } from '../cni/types.js';
import { openCniRuntime } from '../core/cni-runtime.js';
import { askHolder, servesAnotherStore } from '../core/namespace-claim.js';

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
  const stateDir = resolve(process.env.TSNET_STATE_DIR ?? '/var/lib/tsnet');
  // Standalone beside a daemon of another store would render the TSNET chains from this store
  // and wipe the daemon's rules (core/namespace-claim.ts). The daemon of the same store is fine:
  // it sent this call here, or is not reachable on its CNI socket.
  const daemon = await askHolder(1_000);
  if (daemon && servesAnotherStore(daemon, stateDir)) {
    throw new CniError(CNI_CODES.INVALID_ENV, `a tsnet daemon (pid ${daemon.pid}, state ${daemon.stateDir}) runs in this network namespace; TSNET_STATE_DIR=${stateDir} would overwrite its firewall chains: leave TSNET_STATE_DIR unset or point it at ${daemon.stateDir}`);
  }
  const rt = await openCniRuntime(stateDir, log);
  close = rt.close;
  return rt;
});
await close?.();
