#!/usr/bin/env node
// tsnet command line. `tsnet serve` runs the Docker plugin daemon in the foreground.

import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon } from '../core/runtime.js';
import { missingCapabilities } from '../core/capabilities.js';
import type { EndpointRecord, NetworkRecord } from '../core/network-service.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { parseClusterStore } from '../store/etcd-cluster.js';

const USAGE = `usage: tsnet serve [--plugin-dir DIR] [--state-dir DIR] [--log-level LEVEL]
       tsnet port ls [--state-dir DIR] [--json]     published ports (docker port cannot show a remote driver's)
       tsnet cni install [--bin-dir DIR]            install the tsbridge, tsoverlay, tsmacvlan and tsipam CNI plugins (default /opt/cni/bin)
  --plugin-dir  where Docker looks for plugin sockets (default /run/docker/plugins)
  --state-dir   where the store lives (default /var/lib/tsnet)
  --log-level   fatal|error|warn|info|debug|trace (default info)
  --dns-upstream IP[,IP]   resolvers for names tsnet does not know (default: the host's resolv.conf)
  --dns-domain NAME        domain of container names (default tsnet.internal)
  --dns-port N             port of the per-network resolvers (default 53)
  --docker-socket PATH     Docker Engine API, for container names (default /var/run/docker.sock)
  --cni-socket PATH        where installed CNI plugins reach the daemon (default /run/tsnet/cni.sock)
  --cluster-store etcd://H:P[,H:P]   etcd for tsoverlay (multi-host) networks
  --advertise-addr IP      this host's underlay address, the VXLAN endpoint (with --cluster-store)
  --lease-ttl SECONDS      how long a silent host keeps its overlay entries (default 10)
  --cluster-grace SECONDS  how long a dead host's addresses stay reserved (default 60)
  --orphan-grace SECONDS   how long an address Docker was given but never used stays reserved (default 60)
  --reconcile-interval SECONDS  periodic drift-repair pass (default 2; link and address events also start one)`;

/** Writes one small executable per CNI plugin type into the runtime's CNI bin dir. */
function cniInstall(binDir: string): number {
  const here = dirname(fileURLToPath(import.meta.url));
  const entry = join(here, 'cni.js');
  // The native shim (native/src/cni_shim.c) talks to the daemon; it falls back to Node on its own.
  const shim = join(here, '..', '..', 'build', 'Release', 'tsnet-cni-shim');
  if (!existsSync(shim)) {
    console.error(`${shim} is missing: run "npm run build:native"`);
    return 1;
  }
  mkdirSync(binDir, { recursive: true });
  writeFileSync(join(binDir, 'tsnet-cni.conf'), `${process.execPath}\n${entry}\n`);
  for (const type of ['tsbridge', 'tsipam', 'tsmacvlan', 'tsoverlay']) {
    const path = join(binDir, type);
    const tmp = `${path}.tsnet-new`;
    copyFileSync(shim, tmp);
    chmodSync(tmp, 0o755);
    renameSync(tmp, path); // atomic: a runtime never runs a half-written plugin
    console.log(`installed ${path}`);
  }
  return 0;
}

/** Reads published ports straight from the store: works whether or not the daemon runs. */
async function portList(stateDir: string, json: boolean): Promise<number> {
  const store = new SqliteStore(join(stateDir, 'tsnet.db'));
  try {
    const [nets, eps] = await store.read((tx) => [
      tx.list<NetworkRecord>('net/').map(([, n]) => n),
      tx.list<EndpointRecord>('ep/').map(([, e]) => e),
    ] as const);
    const rows = eps.flatMap((e) => (e.ports ?? []).map((p) => ({
      network: e.networkId.slice(0, 12),
      bridge: (() => { const n = nets.find((x) => x.id === e.networkId); return n && 'bridge' in n.state ? n.state.bridge : '?'; })(),
      endpoint: e.id.slice(0, 12),
      host: `${p.family === 6 ? `[${p.hostIp}]` : p.hostIp}:${p.hostPort}${p.hostPortEnd > p.hostPort ? `-${p.hostPortEnd}` : ''}/${p.proto}`,
      container: `${p.family === 6 ? `[${p.containerIp}]` : p.containerIp}:${p.containerPort}`,
    })));
    if (json) console.log(JSON.stringify(rows, null, 2));
    else {
      const cols = ['network', 'bridge', 'endpoint', 'host', 'container'] as const;
      const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
      const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(width[i]!)).join('  ').trimEnd();
      console.log(line(cols.map((c) => c.toUpperCase())));
      for (const r of rows) console.log(line(cols.map((c) => r[c])));
    }
    return 0;
  } finally {
    await store.close();
  }
}

const BOOLEAN_FLAGS = new Set(['json']);

function parse(argv: string[]): { cmd: string; flags: Record<string, string> } {
  const words: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      words.push(a);
      continue;
    }
    const [k, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (BOOLEAN_FLAGS.has(k)) {
      flags[k] = inline ?? 'true';
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    flags[k] = v;
  }
  return { cmd: words.join(' '), flags };
}

async function main(): Promise<number> {
  let args;
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.cmd === 'cni install') return cniInstall(args.flags['bin-dir'] ?? '/opt/cni/bin');
  if (args.cmd === 'port ls') return portList(args.flags['state-dir'] ?? '/var/lib/tsnet', args.flags.json === 'true');
  if (args.cmd !== 'serve') {
    console.error(USAGE);
    return args.cmd === 'help' || args.cmd === '' ? 0 : 2;
  }
  const known = new Set(['plugin-dir', 'state-dir', 'log-level', 'dns-upstream', 'dns-domain', 'dns-port', 'docker-socket', 'cni-socket', 'cluster-store', 'advertise-addr', 'lease-ttl', 'cluster-grace', 'orphan-grace', 'reconcile-interval']);
  const unknown = Object.keys(args.flags).filter((k) => !known.has(k));
  if (unknown.length) {
    console.error(`unknown option(s): ${unknown.map((k) => `--${k}`).join(', ')}\n${USAGE}`);
    return 2;
  }
  // Everything the daemon creates (store, WAL, sockets before their chmod) is for root alone.
  process.umask(0o077);
  const missing = missingCapabilities();
  if (missing.length) {
    console.error(`tsnet serve is missing capabilities: ${missing.map((c) => `${c.name} (${c.why})`).join(', ')}. Run it as root, or grant them.`);
    return 1;
  }
  let clusterStore: string[] | undefined;
  const num = (k: string): number | undefined => {
    const v = args.flags[k];
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`--${k} must be a whole number of seconds`);
    return Number(v);
  };
  let leaseTtl: number | undefined;
  let graceSeconds: number | undefined;
  let orphanGrace: number | undefined;
  let reconcileInterval: number | undefined;
  try {
    if (args.flags['cluster-store']) clusterStore = parseClusterStore(args.flags['cluster-store']);
    if (clusterStore && !args.flags['advertise-addr']) throw new Error('--cluster-store needs --advertise-addr IP');
    leaseTtl = num('lease-ttl');
    graceSeconds = num('cluster-grace');
    orphanGrace = num('orphan-grace');
    reconcileInterval = num('reconcile-interval');
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  try {
    daemon = await startDaemon({
      pluginDir: args.flags['plugin-dir'] ?? '/run/docker/plugins',
      stateDir: args.flags['state-dir'] ?? '/var/lib/tsnet',
      logLevel: args.flags['log-level'] ?? 'info',
      ...(args.flags['dns-port'] ? { dnsPort: Number(args.flags['dns-port']) } : {}),
      ...(args.flags['dns-upstream'] ? { dnsUpstreams: args.flags['dns-upstream'].split(',').filter(Boolean) } : {}),
      ...(args.flags['dns-domain'] ? { dnsDomain: args.flags['dns-domain'] } : {}),
      ...(args.flags['docker-socket'] ? { dockerSocket: args.flags['docker-socket'] } : {}),
      ...(args.flags['cni-socket'] ? { cniSocket: args.flags['cni-socket'] } : {}),
      ...(clusterStore ? { clusterStore, advertiseAddr: args.flags['advertise-addr']! } : {}),
      ...(leaseTtl ? { leaseTtl } : {}),
      ...(graceSeconds ? { graceSeconds } : {}),
      ...(orphanGrace ? { orphanGraceSeconds: orphanGrace } : {}),
      ...(reconcileInterval ? { reconcileSeconds: reconcileInterval } : {}),
    });
  } catch (e) {
    console.error(`tsnet serve: ${(e as Error).message}`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await daemon.stop();
  // Everything is closed; do not linger on a handle someone forgot (the plugin sockets are gone).
  process.exit(0);
}

process.exitCode = await main();
