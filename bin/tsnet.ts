#!/usr/bin/env node
// tsnet command line (commander). `tsnet serve` runs the daemon; the other commands talk to it over
// its root-only control socket, or read the store directly when it is down.

import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Daemon } from '../core/runtime.js';
import { missingCapabilities } from '../core/capabilities.js';
import { endpointRows, findNetwork, lookupName, networkDetail, networkRows, noSuchNetwork, poolRows, portRows, type EndpointRow, type Inventory, type NetworkDetail, type NetworkRow, type PoolRow, type PortRow } from '../core/inventory.js';
import type { NetworkRecord } from '../core/network-service.js';
import type { Finding } from '../core/doctor.js';
import { TSNET_VERSION } from '../core/version.js';
import { DEFAULT_API_SOCKET, parseMetricsAddr } from '../api/addresses.js';
import { parseClusterStore } from '../store/cluster-store.js';
import { CliError, EXIT, print, short, table } from './cli/output.js';
import { api, fetchOr, unwrap, type GlobalOptions } from './cli/source.js';
import { installService } from './cli/service.js';

// The daemon, doctor and standalone code are imported by the commands that run them: a command
// that only asks the daemon something should not load fastify, SQLite or the etcd client first.

const here = dirname(fileURLToPath(import.meta.url));

const seconds = (v: string): number => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('must be a whole number of seconds');
  return Number(v);
};

const program = new Command('tsnet')
  .description('tsnet container networking: Docker network/IPAM plugin and CNI plugins')
  .version(TSNET_VERSION)
  .option('--state-dir <dir>', 'where the store lives', '/var/lib/tsnet')
  .option('--api-socket <path>', "the daemon's control socket", DEFAULT_API_SOCKET)
  .option('--json', 'machine-readable output')
  .showHelpAfterError()
  .exitOverride();

const globals = (): GlobalOptions => program.opts<GlobalOptions>();

/** The network a reference names, in the store read directly (daemon down); exit 3 if none. */
function requireNetwork(inv: Inventory, ref: string): NetworkRecord {
  const n = findNetwork(inv, ref);
  if (!n) throw new CliError(noSuchNetwork(ref), EXIT.NOT_FOUND);
  return n;
}

// ---------------------------------------------------------------- serve
program
  .command('serve')
  .description('run the daemon in the foreground: plugin sockets, CNI socket, resolvers, control API')
  .option('--plugin-dir <dir>', 'where Docker looks for plugin sockets', '/run/docker/plugins')
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'))
  .option('--dns-upstream <ips>', 'resolvers for names tsnet does not know, comma-separated (default: the host resolv.conf)')
  .option('--dns-domain <name>', 'domain of container names', 'tsnet.internal')
  .option('--dns-port <n>', 'port of the per-network resolvers', (v) => Number(v), 53)
  .option('--docker-socket <path>', 'Docker Engine API, for container names', '/var/run/docker.sock')
  .option('--cni-socket <path>', 'where installed CNI plugins reach the daemon', '/run/tsnet/cni.sock')
  .option('--metrics-addr <ip:port>', 'also serve /metrics on this loopback address (it is always on the control socket)')
  .option('--cluster-store <etcd://h:p,...>', 'etcd for tsoverlay (multi-host) networks')
  .option('--advertise-addr <ip>', "this host's underlay address, the VXLAN endpoint (with --cluster-store)")
  .option('--lease-ttl <s>', 'how long a silent host keeps its overlay entries', seconds)
  .option('--cluster-grace <s>', "how long a dead host's addresses stay reserved", seconds)
  .option('--orphan-grace <s>', 'how long an address Docker was given but never used (or a cluster record of an endpoint this host no longer has) stays reserved', seconds)
  .option('--reconcile-interval <s>', 'periodic drift-repair pass (link and address events also start one)', seconds)
  .option('--no-userland-proxy', 'publish through NAT rules alone: no relay for [::1] or for IPv6 in front of IPv4-only containers (dockerd --userland-proxy=false)')
  .option('--docker-sync-interval <s>', 'sweep for networks and endpoints Docker removed while the daemon was down (each goes once two sweeps miss it)', seconds)
  .option('--no-warm-up', 'skip the start-up rehearsal of one attach in private namespaces (it spares the first container ~15 ms of first-run compiling)')
  .addOption(new Option('--managed-plugin <driver>', 'serve as a Docker managed plugin: one socket, tsnet.sock, with this network driver and tsipam').choices(['tsbridge', 'tsmacvlan', 'tsnull', 'tshost']))
  .action(async (o) => {
    const g = globals();
    process.umask(0o077); // store, WAL and sockets are root's alone from their first instant
    const missing = missingCapabilities();
    if (missing.length) throw new CliError(`tsnet serve is missing capabilities: ${missing.map((c) => `${c.name} (${c.why})`).join(', ')}. Run it as root, or grant them.`);
    let clusterStore: string[] | undefined;
    try {
      clusterStore = o.clusterStore ? parseClusterStore(o.clusterStore) : undefined;
    } catch (e) {
      throw new CliError((e as Error).message, EXIT.USAGE);
    }
    if (clusterStore && !o.advertiseAddr) throw new CliError('--cluster-store needs --advertise-addr IP', EXIT.USAGE);
    if (o.metricsAddr) {
      try {
        parseMetricsAddr(o.metricsAddr);
      } catch (e) {
        throw new CliError((e as Error).message, EXIT.USAGE);
      }
    }
    const { startDaemon } = await import('../core/runtime.js');
    let daemon: Daemon;
    try {
      daemon = await startDaemon({
        pluginDir: o.pluginDir, stateDir: g.stateDir, logLevel: o.logLevel, apiSocket: g.apiSocket,
        dnsPort: o.dnsPort, dnsDomain: o.dnsDomain, dockerSocket: o.dockerSocket, cniSocket: o.cniSocket,
        ...(o.dnsUpstream ? { dnsUpstreams: String(o.dnsUpstream).split(',').filter(Boolean) } : {}),
        ...(o.metricsAddr ? { metricsAddr: o.metricsAddr } : {}),
        ...(o.managedPlugin ? { managedPlugin: o.managedPlugin } : {}),
        ...(clusterStore ? { clusterStore, advertiseAddr: o.advertiseAddr } : {}),
        ...(o.leaseTtl ? { leaseTtl: o.leaseTtl } : {}),
        ...(o.clusterGrace ? { graceSeconds: o.clusterGrace } : {}),
        ...(o.orphanGrace ? { orphanGraceSeconds: o.orphanGrace } : {}),
        ...(o.reconcileInterval ? { reconcileSeconds: o.reconcileInterval } : {}),
        ...(o.dockerSyncInterval ? { dockerSyncSeconds: o.dockerSyncInterval } : {}),
        userlandProxy: o.userlandProxy !== false,
        warmUp: o.warmUp !== false,
      });
    } catch (e) {
      // Whatever started before the failure may hold the event loop open: leave now.
      console.error(`tsnet serve: ${(e as Error).message}`);
      process.exit(EXIT.FAILED);
    }
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    await daemon.stop();
    // Everything is closed; do not linger on a handle someone forgot (the plugin sockets are gone).
    process.exit(0);
  });

// ---------------------------------------------------------------- network / endpoint / ipam / port
const networkColumns = [
  ['NETWORK ID', (r: NetworkRow) => short(r.id)], ['NAME', (r: NetworkRow) => r.name], ['DRIVER', (r: NetworkRow) => r.driver],
  ['SUBNETS', (r: NetworkRow) => r.subnets], ['GATEWAYS', (r: NetworkRow) => r.gateways], ['INTERFACE', (r: NetworkRow) => r.interface],
  ['ENDPOINTS', (r: NetworkRow) => r.endpoints], ['INTERNAL', (r: NetworkRow) => r.internal],
] as const;
const endpointColumns = [
  ['ENDPOINT ID', (r: EndpointRow) => short(r.id)], ['NETWORK', (r: EndpointRow) => (r.networkName !== '-' ? r.networkName : short(r.network))],
  ['ADDRESSES', (r: EndpointRow) => r.addresses], ['MAC', (r: EndpointRow) => r.mac], ['INTERFACE', (r: EndpointRow) => r.interface],
  ['NAMES', (r: EndpointRow) => r.names], ['PORTS', (r: EndpointRow) => r.ports],
] as const;

const network = program.command('network').description('networks tsnet manages');
network.command('ls').description('list networks').action(async () => {
  const rows = await fetchOr<NetworkRow[]>(globals(), '/v1/networks', networkRows);
  print(!!globals().json, rows, () => table(rows, networkColumns));
});
network.command('inspect').description('one network: its record, its endpoints').argument('<network>', 'id, id prefix or name').action(async (ref: string) => {
  const got = await fetchOr<NetworkDetail>(globals(), `/v1/networks/${encodeURIComponent(ref)}`, (inv) => networkDetail(inv, requireNetwork(inv, ref)));
  print(!!globals().json, got, () => {
    const r = got.row;
    const kv = [['ID', r.id], ['Name', r.name], ['Driver', r.driver], ['Subnets', r.subnets.join(', ')], ['Gateways', r.gateways.join(', ') || '-'],
      ['Interface', r.interface], ['Internal', String(r.internal)], ['Created', r.created], ['Options', JSON.stringify(got.record.spec.rawOptions)]];
    return `${kv.map(([k, v]) => `${`${k}:`.padEnd(11)}${v}`).join('\n')}\n\n${table(got.endpoints, endpointColumns)}`;
  });
});

network.command('rm').description('remove a network tsnet holds and no front-end will remove (left over, or forgotten by Docker): its endpoints, bridge, rules and tsipam pools')
  .argument('<network>', 'id, id prefix or name').option('--force', 'even with containers still attached').action(async (ref: string, o: { force?: boolean }) => {
    const g = globals();
    type Removed = { network: string; endpoints: string[]; pools: string[] };
    const a = await api<Removed>(g, 'POST', `/v1/networks/${encodeURIComponent(ref)}/remove${o.force ? '?force=1' : ''}`);
    let out: Removed;
    if (a) out = unwrap(a);
    else {
      console.error(`(daemon not running: removing with the store at ${g.stateDir} directly)`);
      const [{ openCniRuntime }, { pino }, { removeNetworkByRef }] = await Promise.all([
        import('../core/cni-runtime.js'), import('pino'), import('../core/network-removal.js'),
      ]);
      const rt = await openCniRuntime(g.stateDir, pino({ level: 'warn' }, pino.destination(2)));
      try {
        const r = await removeNetworkByRef(rt.store, rt.networks, rt.ipam, ref, !!o.force);
        if (r.outcome !== 'removed') throw new CliError(r.message, r.outcome === 'not-found' ? EXIT.NOT_FOUND : EXIT.FAILED);
        const { outcome: _, ...removed } = r;
        out = removed;
      } finally {
        await rt.close();
      }
    }
    print(!!g.json, out, () => `removed network ${short(out.network)}: ${out.endpoints.length} endpoint(s)${out.pools.length ? `, pool(s) ${out.pools.join(', ')}` : ''}`);
  });

program.command('endpoint').description('endpoints (container attachments)')
  .command('ls').description('list endpoints').option('--network <network>', 'only this network (id, id prefix or name)')
  .action(async (o: { network?: string }) => {
    const q = o.network ? `?network=${encodeURIComponent(o.network)}` : '';
    const rows = await fetchOr<EndpointRow[]>(globals(), `/v1/endpoints${q}`, (inv) => {
      return o.network ? endpointRows(inv, requireNetwork(inv, o.network)) : endpointRows(inv);
    });
    print(!!globals().json, rows, () => table(rows, endpointColumns));
  });

program.command('ipam').description('address pools')
  .command('ls').description('pools and how full they are').action(async () => {
    const rows = await fetchOr<PoolRow[]>(globals(), '/v1/ipam/pools', poolRows);
    print(!!globals().json, rows, () => table(rows, [
      ['POOL', (r) => r.id], ['SUBNET', (r) => r.subnet], ['SPACE', (r) => r.addressSpace], ['USED', (r) => r.used], ['SIZE', (r) => r.size], ['USE%', (r) => r.usedPercent.toFixed(1)],
    ]));
  });

program.command('port').description('published ports')
  .command('ls').description('list published ports (docker port cannot show a remote driver’s)').action(async () => {
    const rows = await fetchOr<PortRow[]>(globals(), '/v1/ports', portRows);
    print(!!globals().json, rows, () => table(rows, [['NETWORK', (r) => r.network], ['ENDPOINT', (r) => r.endpoint], ['HOST', (r) => r.host], ['CONTAINER', (r) => r.container]]));
  });

// ---------------------------------------------------------------- dns lookup
program.command('dns').description('the per-network resolvers')
  .command('lookup').description("answer NAME as the network's resolver would (no forwarding upstream)")
  .argument('<name>').requiredOption('--network <network>', 'id, id prefix or name')
  .addOption(new Option('--type <type>', 'record type').choices(['A', 'AAAA', 'PTR', 'ANY']).default('A'))
  .action(async (name: string, o: { network: string; type: 'A' | 'AAAA' | 'PTR' | 'ANY' }) => {
    const g = globals();
    const path = `/v1/dns/lookup?name=${encodeURIComponent(name)}&network=${encodeURIComponent(o.network)}&type=${o.type}`;
    type Answer = { network: string; name: string; type: string; result: ReturnType<typeof lookupName> };
    const got = await fetchOr<Answer>(g, path, (inv) => {
      const n = requireNetwork(inv, o.network);
      return { network: n.id, name, type: o.type, result: lookupName(inv, n, name, o.type) };
    });
    print(!!g.json, got, () => {
      const r = got.result;
      if (r.kind === 'answer') return r.addresses.join('\n');
      if (r.kind === 'ptr') return r.names.join('\n');
      return r.kind === 'foreign' ? `${name}: not a name of this network (the resolver would forward it upstream)` : `${name}: ${r.kind === 'nodata' ? `no ${o.type} record` : 'no such name'}`;
    });
    if (got.result.kind !== 'answer' && got.result.kind !== 'ptr') process.exitCode = EXIT.NOT_FOUND;
  });

// ---------------------------------------------------------------- gc
program.command('gc').description('remove endpoints whose container is gone, leaked links and drift (through the daemon, or standalone)')
  .action(async () => {
    const g = globals();
    const a = await api<{ endpoints: string[]; repairs: Array<{ what: string; object: string }> }>(g, 'POST', '/v1/gc');
    let out: { endpoints: string[]; repairs: Array<{ what: string; object: string }> };
    if (a) out = unwrap(a);
    else {
      console.error(`(daemon not running: collecting with the store at ${g.stateDir} directly)`);
      const [{ openCniRuntime }, { pino }] = await Promise.all([import('../core/cni-runtime.js'), import('pino')]);
      const rt = await openCniRuntime(g.stateDir, pino({ level: 'warn' }, pino.destination(2)));
      try {
        out = { endpoints: await rt.networks.gcEndpoints(), repairs: [] };
      } finally {
        await rt.close();
      }
    }
    print(!!g.json, out, () => [
      `${out.endpoints.length} endpoint(s) of vanished containers removed${out.endpoints.length ? `: ${out.endpoints.map(short).join(', ')}` : ''}`,
      `${out.repairs.length} repair(s)${out.repairs.length ? `:\n${out.repairs.map((r) => `  ${r.what}: ${r.object}`).join('\n')}` : ''}`,
    ].join('\n'));
  });

// ---------------------------------------------------------------- doctor
program.command('doctor').description('check this host for what tsnet needs and what commonly goes wrong')
  .option('--plugin-dir <dir>', 'where the plugin sockets are', '/run/docker/plugins')
  .option('--docker-socket <path>', 'Docker Engine API', '/var/run/docker.sock')
  .option('--cluster-store <etcd://h:p,...>', 'check that etcd answers (cluster mode)')
  .option('--dns-port <n>', 'port of the per-network resolvers', (v) => Number(v), 53)
  .action(async (o) => {
    const g = globals();
    const { runDoctor } = await import('../core/doctor.js');
    const findings = await runDoctor({
      stateDir: g.stateDir, pluginDir: o.pluginDir, apiSocket: g.apiSocket, dockerSocket: o.dockerSocket, dnsPort: o.dnsPort,
      ...(o.clusterStore ? { clusterStore: parseClusterStore(o.clusterStore) } : {}),
    });
    const mark: Record<Finding['level'], string> = { ok: ' ok ', warn: 'WARN', error: 'FAIL' };
    print(!!g.json, findings, () => findings.map((f) => `[${mark[f.level]}] ${f.title}${f.detail ? `\n       ${f.detail}` : ''}${f.fix ? `\n       fix: ${f.fix}` : ''}`).join('\n'));
    if (findings.some((f) => f.level === 'error')) process.exitCode = EXIT.FAILED;
  });

// ---------------------------------------------------------------- cni install / install-service
program.command('cni').description('CNI plugins')
  .command('install').description('install the tsbridge, tsoverlay, tsmacvlan and tsipam CNI plugins')
  .option('--bin-dir <dir>', "the runtime's CNI bin dir", '/opt/cni/bin')
  .action((o: { binDir: string }) => {
    // The native shim (native/src/cni_shim.c) talks to the daemon; without one it runs the
    // standalone entry in Node: bin/cni.ts bundled into one file (scripts/bundle-cni.mjs says why).
    const entry = join(here, 'cni-standalone.js');
    if (!existsSync(entry)) throw new CliError(`${entry} is missing: run "npm run build:ts"`);
    const shim = join(here, '..', '..', 'build', 'Release', 'tsnet-cni-shim');
    if (!existsSync(shim)) throw new CliError(`${shim} is missing: run "npm run build:native"`);
    mkdirSync(o.binDir, { recursive: true });
    writeFileSync(join(o.binDir, 'tsnet-cni.conf'), `${process.execPath}\n${entry}\n`);
    for (const type of ['tsbridge', 'tsipam', 'tsmacvlan', 'tsoverlay']) {
      const path = join(o.binDir, type);
      const tmp = `${path}.tsnet-new`;
      copyFileSync(shim, tmp);
      chmodSync(tmp, 0o755);
      renameSync(tmp, path); // atomic: a runtime never runs a half-written plugin
      console.log(`installed ${path}`);
    }
  });

program.command('install-service').description('install the systemd unit (tsnet serve, before docker.service, restart on failure) and start it')
  .option('--unit-dir <dir>', 'where unit files go', '/etc/systemd/system')
  .option('--no-start', 'only write the unit')
  .argument('[serve-args...]', 'extra arguments for tsnet serve (after --)')
  .action((serveArgs: string[], o: { unitDir: string; start: boolean }) => {
    const g = globals();
    const args = [...(g.stateDir !== '/var/lib/tsnet' ? ['--state-dir', g.stateDir] : []), ...serveArgs];
    const r = installService(o.unitDir, args, join(here, 'tsnet.js'), o.start);
    print(!!g.json, r, () => `wrote ${r.path}${r.enabled ? '; enabled and started' : r.note ? ` (${r.note})` : ''}`);
  });

// ---------------------------------------------------------------- run
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Help and --version end here too (exit code 0); usage errors were already printed.
    process.exitCode = e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  } else if (e instanceof CliError) {
    console.error(`tsnet: ${e.message}`);
    process.exitCode = e.exitCode;
  } else {
    console.error(`tsnet: ${(e as Error).message}`);
    process.exitCode = EXIT.FAILED;
  }
}
