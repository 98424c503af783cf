// `tsnet doctor`: checks what tsnet needs from this host and what commonly goes wrong, and says
// for each finding what to do. Every check looks at the namespace the doctor runs in, so a test
// (or an operator) can point it at any network namespace with nsenter --net.

import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { forwardChain, iptablesBackend, IptablesFirewall } from '../kernel/firewall/iptables.js';
import { NetlinkHandle } from '../kernel/netlink.js';
import { createNetns, deleteNetns } from '../kernel/netns.js';
import { sysctlGet } from '../kernel/sysctl.js';
import type { LinkSpec } from '../kernel/types.js';
import { overlaps, parseSubnet } from '../ipam/subnet.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { readInventory, type Inventory } from './inventory.js';
import { askHolder, servesAnotherStore } from './namespace-claim.js';
import { linkOwnedBy } from './owner.js';
import { NetworkService, hasGatewayBridge, recordedLinkNames } from './network-service.js';

export type Level = 'ok' | 'warn' | 'error';

export interface Finding {
  /** Stable identifier for scripts and tests, e.g. "sysctl.ip_forward". */
  id: string;
  level: Level;
  title: string;
  detail?: string;
  /** What to do about it (absent when all is well). */
  fix?: string;
}

export interface DoctorOptions {
  stateDir: string;
  pluginDir: string;
  apiSocket: string;
  dockerSocket: string;
  /** etcd endpoints ("host:port") when cluster mode is in use. */
  clusterStore?: string[];
  /** Port of the per-network resolvers (their firewall rules are part of the expected state). */
  dnsPort?: number;
}

const PLUGINS = ['tsbridge', 'tsoverlay', 'tsmacvlan', 'tsnull', 'tshost', 'tsipam'];
const silent = { debug() {}, info() {}, warn() {}, error() {} };

function httpCall(opts: { socketPath?: string; host?: string; port?: number; path: string; method: string }, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...opts, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.end();
  });
}

/** Kernel features, tried for real in a throwaway namespace (modules load on first use). */
async function kernelFeatures(): Promise<Finding[]> {
  const ns = await createNetns(`tsnet-doctor-${process.pid}`);
  const out: Finding[] = [];
  try {
    await using nl = await NetlinkHandle.open(ns);
    await nl.linkAdd({ kind: 'veth', name: 'd-veth0', peer: { name: 'd-veth1' } });
    const tries: Array<[string, LinkSpec, string, Level]> = [
      ['bridge', { kind: 'bridge', name: 'd-br' }, 'tsbridge and tsoverlay need it', 'error'],
      ['vxlan', { kind: 'vxlan', name: 'd-vx', vni: 42, port: 4789, learning: false }, 'tsoverlay needs it', 'error'],
      ['macvlan', { kind: 'macvlan', name: 'd-mv', parent: { name: 'd-veth0' }, mode: 'bridge' }, 'tsmacvlan needs it', 'error'],
      ['8021q', { kind: 'vlan', name: 'd-vl', parent: { name: 'd-veth0' }, vlanId: 10 }, 'only tsmacvlan parents of the form eth0.10 need it', 'warn'],
    ] as Array<[string, LinkSpec, string, Level]>;
    out.push({ id: 'kernel.veth', level: 'ok', title: 'kernel: veth' });
    for (const [name, spec, why, level] of tries) {
      try {
        await nl.linkAdd(spec);
        out.push({ id: `kernel.${name}`, level: 'ok', title: `kernel: ${name}` });
      } catch (e) {
        out.push({ id: `kernel.${name}`, level, title: `kernel: ${name} is not available`, detail: `${(e as Error).message}; ${why}`, fix: `load the module (modprobe ${name}) or use a kernel built with it` });
      }
    }
  } catch (e) {
    out.push({ id: 'kernel.veth', level: 'error', title: 'kernel: veth pairs cannot be created', detail: (e as Error).message, fix: 'every driver needs veth (modprobe veth)' });
  } finally {
    await deleteNetns(ns);
  }
  return out;
}

async function firewall(inv: Inventory | undefined): Promise<Finding[]> {
  const out: Finding[] = [];
  try {
    const b = await iptablesBackend();
    out.push({ id: 'iptables.backend', level: 'ok', title: `iptables backend: ${b.backend}`, detail: b.version });
  } catch (e) {
    return [{ id: 'iptables.backend', level: 'error', title: 'iptables is not usable', detail: (e as Error).message, fix: 'install iptables (apt-get install iptables); tsnet renders NAT and isolation with it' }];
  }
  try {
    const nat = await forwardChain(4);
    const bridges = inv?.networks.filter(hasGatewayBridge).length ?? 0;
    if (nat.policy === 'DROP' && bridges && !nat.jumpsToTsnet) {
      out.push({ id: 'iptables.forward', level: 'error', title: 'FORWARD policy is DROP (Docker sets it) and nothing jumps to TSNET-FORWARD', detail: `${bridges} network(s) need forwarding`, fix: 'start (or restart) the tsnet daemon: it re-installs its chains within seconds' });
    } else {
      out.push({ id: 'iptables.forward', level: 'ok', title: `FORWARD policy ${nat.policy}${nat.jumpsToTsnet ? ', jumps to TSNET-FORWARD' : ''}` });
    }
  } catch (e) {
    out.push({ id: 'iptables.forward', level: 'warn', title: 'cannot read the FORWARD chain', detail: (e as Error).message });
  }
  return out;
}

async function forwarding(inv: Inventory | undefined): Promise<Finding[]> {
  const out: Finding[] = [];
  const v4 = (await sysctlGet(undefined, 'net.ipv4.ip_forward').catch(() => '?')).trim();
  out.push(v4 === '1'
    ? { id: 'sysctl.ip_forward', level: 'ok', title: 'net.ipv4.ip_forward = 1' }
    : { id: 'sysctl.ip_forward', level: 'error', title: `net.ipv4.ip_forward = ${v4}: containers cannot reach beyond their bridge`, fix: 'sysctl -w net.ipv4.ip_forward=1 (and set it in /etc/sysctl.d/ to keep it)' });
  const wants6 = inv?.networks.some((n) => n.spec.enableIPv6 && n.spec.ipv6.length) ?? false;
  if (wants6) {
    const v6 = (await sysctlGet(undefined, 'net.ipv6.conf.all.forwarding').catch(() => '?')).trim();
    out.push(v6 === '1'
      ? { id: 'sysctl.ipv6_forwarding', level: 'ok', title: 'net.ipv6.conf.all.forwarding = 1' }
      : { id: 'sysctl.ipv6_forwarding', level: 'error', title: `net.ipv6.conf.all.forwarding = ${v6} with IPv6 networks defined`, fix: 'sysctl -w net.ipv6.conf.all.forwarding=1' });
  }
  return out;
}

async function sockets(o: DoctorOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const dead: string[] = [];
  for (const p of PLUGINS) {
    const path = join(o.pluginDir, `${p}.sock`);
    const ok = existsSync(path) && (await httpCall({ socketPath: path, path: '/Plugin.Activate', method: 'POST' }).then((r) => r.status === 200, () => false));
    if (!ok) dead.push(p);
  }
  out.push(dead.length === 0
    ? { id: 'plugins.sockets', level: 'ok', title: `plugin sockets answer in ${o.pluginDir}` }
    : { id: 'plugins.sockets', level: 'error', title: `plugin socket(s) not answering: ${dead.join(', ')}`, detail: `in ${o.pluginDir}`, fix: 'start the daemon (npm start, or systemctl start tsnet); Docker cannot use tsnet drivers until then' });
  const apiUp = existsSync(o.apiSocket) && (await httpCall({ socketPath: o.apiSocket, path: '/v1/health', method: 'GET' }).then((r) => r.status === 200, () => false));
  out.push(apiUp
    ? { id: 'daemon.api', level: 'ok', title: `daemon answers on ${o.apiSocket}` }
    : { id: 'daemon.api', level: 'warn', title: `no daemon answers on ${o.apiSocket}`, fix: 'start the daemon; without it CNI calls run standalone and the resolvers are down' });
  // One daemon per network namespace (core/namespace-claim.ts): a daemon of another store here
  // would own the TSNET chains, and this store's networks would lose their rules.
  const holder = await askHolder();
  if (holder && servesAnotherStore(holder, o.stateDir)) {
    out.push({ id: 'daemon.claim', level: 'error', title: `the tsnet daemon here (pid ${holder.pid}) serves another store: ${holder.stateDir}`, detail: `this store is ${o.stateDir}; its networks get no firewall rules from that daemon`, fix: `run doctor with --state-dir ${holder.stateDir}, or stop that daemon (a managed plugin beside tsnet serve?) and start this store's` });
  } else {
    out.push({ id: 'daemon.claim', level: 'ok', title: holder ? `the daemon here (pid ${holder.pid}) serves this store` : 'no other tsnet daemon claims this network namespace' });
  }
  const docker = await httpCall({ socketPath: o.dockerSocket, path: '/_ping', method: 'GET' }).then((r) => r.status === 200 && r.body === 'OK', () => false);
  out.push(docker
    ? { id: 'docker.reachable', level: 'ok', title: `Docker answers on ${o.dockerSocket}` }
    : { id: 'docker.reachable', level: 'warn', title: `Docker does not answer on ${o.dockerSocket}`, detail: 'CNI use does not need it; container names for DNS come from it', fix: 'start dockerd, or ignore this on CNI-only hosts' });
  return out;
}

async function etcd(o: DoctorOptions): Promise<Finding[]> {
  if (!o.clusterStore?.length) return [];
  const answers = await Promise.all(o.clusterStore.map(async (ep) => {
    const [host, port] = [ep.slice(0, ep.lastIndexOf(':')), Number(ep.slice(ep.lastIndexOf(':') + 1))];
    return httpCall({ host: host.replace(/^\[|\]$/g, ''), port, path: '/health', method: 'GET' }).then((r) => r.status === 200, () => false);
  }));
  const up = o.clusterStore.filter((_, i) => answers[i]);
  return [up.length
    ? { id: 'etcd.reachable', level: 'ok', title: `etcd answers at ${up.join(', ')}` }
    : { id: 'etcd.reachable', level: 'error', title: `etcd does not answer at ${o.clusterStore.join(', ')}`, fix: 'tsoverlay networks cannot be created or joined until it does; check the cluster store address and the etcd service' }];
}

/** Overlay MTU against the underlay, and subnets against routes that are not ours. */
async function routing(nl: NetlinkHandle, inv: Inventory): Promise<Finding[]> {
  const out: Finding[] = [];
  const links = await nl.linkList();
  const routes = await nl.routeList();
  const ours = new Set(inv.networks.flatMap((n) => (hasGatewayBridge(n) ? [n.state.bridge] : [])));
  const byIndex = new Map(links.map((l) => [l.index, l]));
  const defaultDev = byIndex.get(routes.find((r) => r.dst === 'default')?.oif ?? -1);
  for (const n of inv.networks) {
    if (n.driver !== 'tsoverlay') continue;
    const gw = links.find((l) => l.name === n.state.bridge);
    if (!gw || !defaultDev) continue;
    if (gw.mtu > defaultDev.mtu - 50) {
      out.push({ id: 'mtu.overlay', level: 'error', title: `overlay ${n.id.slice(0, 12)} has MTU ${gw.mtu} but the underlay (${defaultDev.name}) has ${defaultDev.mtu}`, detail: 'VXLAN adds 50 bytes: large packets will be dropped', fix: `re-create the network with -o com.docker.network.driver.mtu=${defaultDev.mtu - 50}, or raise ${defaultDev.name}'s MTU` });
    }
  }
  if (!out.some((f) => f.id === 'mtu.overlay')) out.push({ id: 'mtu.overlay', level: 'ok', title: 'overlay MTUs fit the underlay' });
  const foreign = routes.filter((r) => r.dst !== 'default' && !ours.has(byIndex.get(r.oif ?? -1)?.name ?? '') && !r.dst.startsWith('fe80:') && !r.dst.startsWith('ff00:'));
  let clashes = 0;
  for (const n of inv.networks) {
    for (const s of [...n.spec.ipv4, ...n.spec.ipv6].map((x) => x.subnet)) {
      const mine = parseSubnet(s);
      for (const r of foreign) {
        let theirs;
        try {
          theirs = parseSubnet(r.dst);
        } catch {
          continue;
        }
        if (theirs.family !== mine.family || !overlaps(mine, theirs)) continue;
        clashes++;
        out.push({ id: 'subnet.overlap', level: 'error', title: `subnet ${s} of network ${n.id.slice(0, 12)} overlaps the host route ${r.dst} via ${byIndex.get(r.oif ?? -1)?.name ?? '?'}`, detail: 'traffic for one of them goes to the wrong place', fix: 'remove the network and re-create it with a free subnet (or drop the conflicting route)' });
      }
    }
  }
  if (!clashes) out.push({ id: 'subnet.overlap', level: 'ok', title: 'no network subnet overlaps a host route' });
  return out;
}

/** Links this store made that no record names, and tsnet's iptables chains against the store. */
async function leaks(nl: NetlinkHandle, store: SqliteStore, inv: Inventory, o: DoctorOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const id = await store.read((t) => t.get<string>('meta/owner'));
  if (id) {
    const owner = `tsnet:${id}`;
    const known = recordedLinkNames(inv.networks, inv.endpoints);
    const leaked = (await nl.linkList()).filter((l) => linkOwnedBy(l, owner) && !known.has(l.name));
    out.push(leaked.length
      ? { id: 'leaks.links', level: 'warn', title: `${leaked.length} link(s) made by this tsnet with no record: ${leaked.slice(0, 5).map((l) => l.name).join(', ')}${leaked.length > 5 ? ', …' : ''}`, fix: 'run "tsnet gc" (the running daemon also removes them within seconds)' }
      : { id: 'leaks.links', level: 'ok', title: 'no leaked links' });
  }
  try {
    await using host = await NetlinkHandle.open();
    const svc = new NetworkService(store, { host, firewall: new IptablesFirewall(), log: silent }, { resolverPort: o.dnsPort ?? 53 });
    const drift = await svc.firewallDrift();
    out.push(drift.length
      ? { id: 'leaks.iptables', level: 'warn', title: `tsnet's iptables rules differ from the store: ${drift.slice(0, 3).join('; ')}`, fix: 'the running daemon repairs this within 2 s; if it is down, start it (or run "tsnet gc")' }
      : { id: 'leaks.iptables', level: 'ok', title: "tsnet's iptables chains match the store" });
  } catch (e) {
    out.push({ id: 'leaks.iptables', level: 'warn', title: 'cannot compare iptables with the store', detail: (e as Error).message });
  }
  return out;
}

export async function runDoctor(o: DoctorOptions): Promise<Finding[]> {
  const dbPath = join(o.stateDir, 'tsnet.db');
  const store = existsSync(dbPath) ? new SqliteStore(dbPath) : undefined;
  try {
    const inv = store ? await readInventory(store) : undefined;
    const findings: Finding[] = [
      ...(await kernelFeatures()),
      ...(await firewall(inv)),
      ...(await forwarding(inv)),
      ...(await sockets(o)),
      ...(await etcd(o)),
    ];
    if (store && inv) {
      await using nl = await NetlinkHandle.open();
      findings.push(...(await routing(nl, inv)), ...(await leaks(nl, store, inv, o)));
    } else {
      findings.push({ id: 'store', level: 'warn', title: `no store at ${dbPath}`, detail: 'nothing to compare the kernel with', fix: 'start the daemon once, or pass --state-dir' });
    }
    return findings;
  } finally {
    await store?.close();
  }
}
