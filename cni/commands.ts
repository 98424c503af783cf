// The CNI verbs for tsbridge (+ tsipam in-process, or any other IPAM plugin by delegation),
// on the same NetworkService, store and firewall as the Docker front-end.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { bridgeEndpoint, isBridgeNetwork, type BridgeNetworkRecord, type NetworkService } from '../core/network-service.js';
import { Tx } from '../core/tx.js';
import { applyInSandbox, removeFromSandbox } from '../drivers/shared/sandbox.js';
import type { Ipam } from '../ipam/ipam.js';
import { netCodeOf, NetError } from '../kernel/errors.js';
import { NetlinkHandle } from '../kernel/netlink.js';
import { withFileLock } from '../store/file-lock.js';
import type { Logger } from '../drivers/driver.js';
import { parseCniArgs, requestedAddress, type BridgeConf } from './conf.js';
import { CNI_CODES, CniError, type CniEnv, type CniResult } from './types.js';

export interface CniRuntime {
  networks: NetworkService;
  ipam: Ipam;
  host: NetlinkHandle;
  stateDir: string;
  dnsDomain: string;
  log: Logger;
}

/** One key space with Docker's endpoints: a CNI attachment is (container id, ifname). */
export function endpointIdFor(containerId: string, ifName: string): string {
  return createHash('sha256').update(`${containerId}\0${ifName}`).digest('hex');
}

const cniNetworkId = (name: string): string => `cni-${name}`;

async function findNetwork(rt: CniRuntime, conf: BridgeConf): Promise<BridgeNetworkRecord | undefined> {
  // A network created through Docker is joined by its bridge name: one network, two runtimes.
  const all = (await rt.networks.listNetworks()).filter(isBridgeNetwork);
  return all.find((n) => n.id === cniNetworkId(conf.name)) ?? all.find((n) => n.state.bridge === conf.bridge);
}

const netLock = (rt: CniRuntime, conf: BridgeConf): string => join(rt.stateDir, `cni-net-${conf.name}.lock`);

/** The network for this conflist, created (bridge, gateway, firewall) on first use. Caller holds netLock. */
async function ensureNetwork(rt: CniRuntime, conf: BridgeConf): Promise<BridgeNetworkRecord> {
  {
    const again = await findNetwork(rt, conf);
    if (again) return again;
    const subnets = conf.ipam?.type === 'tsipam' ? conf.ipam.subnets : [];
    // tsipam without a subnet joins a network that has them (a Docker network's bridge); making
    // one, it would give no addresses at all. An empty ipam ({}) is how a conf asks for that.
    if (conf.ipam?.type === 'tsipam' && !subnets.length) {
      throw new CniError(CNI_CODES.INVALID_CONFIG, `tsipam needs ipam.subnet, ipam.ranges or runtimeConfig.ipRanges to make network ${conf.name} (bridge ${conf.bridge} is not one of tsnet's networks)`);
    }
    const fam = (s: { subnet: string }): 4 | 6 => (s.subnet.includes(':') ? 6 : 4);
    const withGateways: Array<{ subnet: string; gateway?: string }> = [];
    // Pools made here go again if the network is not made (a refused subnet, a bridge name in
    // use): with them the gateway addresses taken in them. A pool that was there already may be
    // someone else's, and so may its gateway: left as found.
    const madePools: string[] = [];
    try {
      for (const s of subnets) {
        // ensurePool's two steps, apart, so a pool made here is known as such.
        const existing = await rt.ipam.findPool(s.subnet);
        const pool = existing ?? (await rt.ipam.requestPool({ pool: s.subnet, v6: fam(s) === 6 }));
        if (!existing) madePools.push(pool.id);
        if (!conf.isGateway) {
          withGateways.push({ subnet: pool.subnet });
          continue;
        }
        const gw = await rt.ipam.requestAddress(pool.id, { owner: `gateway:${pool.id}`, kind: 'gateway', ...(s.gateway ? { address: s.gateway } : {}) });
        withGateways.push({ subnet: pool.subnet, gateway: gw });
      }
      const raw: Record<string, string> = {
        'com.docker.network.bridge.name': conf.bridge,
        'com.docker.network.bridge.enable_ip_masquerade': String(conf.ipMasq),
        ...(conf.mtu ? { 'com.docker.network.driver.mtu': String(conf.mtu) } : {}),
      };
      await rt.networks.createNetwork({
        id: cniNetworkId(conf.name),
        ipv4: withGateways.filter((s) => fam(s) === 4),
        ipv6: withGateways.filter((s) => fam(s) === 6),
        internal: false,
        enableIPv6: withGateways.some((s) => fam(s) === 6),
        rawOptions: raw,
      });
    } catch (e) {
      for (const id of madePools.reverse()) {
        await rt.ipam.releaseOwner(`gateway:${id}`).catch(() => undefined);
        await rt.ipam.releasePool(id, { everyRef: true }).catch(() => undefined);
      }
      throw e;
    }
    return (await findNetwork(rt, conf))!;
  }
}

/** A network made by CNI goes with its last attachment (a Docker-made one stays Docker's). */
async function dropNetworkIfUnused(rt: CniRuntime, conf: BridgeConf): Promise<void> {
  await withFileLock(netLock(rt, conf), async () => {
    const net = await findNetwork(rt, conf);
    if (!net || net.id !== cniNetworkId(conf.name) || (await rt.networks.listEndpoints(net.id)).length) return;
    await rt.networks.deleteNetwork(net.id);
    for (const subnet of [...net.state.subnets4, ...net.state.subnets6]) {
      const pool = await rt.ipam.ensurePool(subnet);
      await rt.ipam.releaseOwner(`gateway:${pool.id}`);
      await rt.ipam.releasePool(pool.id);
    }
  });
}

// ---- delegated IPAM (any CNI IPAM plugin found on CNI_PATH) -------------------------------

function findPlugin(type: string, cniPath: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(type)) throw new CniError(CNI_CODES.INVALID_CONFIG, `bad plugin type ${JSON.stringify(type)}`);
  for (const dir of cniPath.split(':').filter(Boolean)) {
    const p = join(dir, type);
    if (existsSync(p)) return p;
  }
  throw new CniError(CNI_CODES.INVALID_CONFIG, `IPAM plugin ${type} not found in CNI_PATH (${cniPath || 'empty'})`);
}

function delegate(type: string, env: CniEnv, command: string, stdin: Record<string, unknown>): CniResult | undefined {
  const plugin = findPlugin(type, env.path);
  const r = spawnSync(plugin, [], {
    input: JSON.stringify(stdin),
    encoding: 'utf8',
    timeout: 60_000,
    env: {
      ...process.env, CNI_COMMAND: command, CNI_CONTAINERID: env.containerId, CNI_NETNS: env.netns,
      CNI_IFNAME: env.ifName, CNI_ARGS: env.args, CNI_PATH: env.path,
    },
  });
  if (r.stderr) process.stderr.write(r.stderr);
  if (r.status !== 0) {
    let err: { code?: number; msg?: string; details?: string } = {};
    try {
      err = JSON.parse(r.stdout);
    } catch {
      err = { msg: r.stdout || r.stderr || `exit ${r.status}` };
    }
    throw new CniError(err.code ?? CNI_CODES.INTERNAL, `IPAM plugin ${type}: ${err.msg ?? 'failed'}`, err.details ?? '');
  }
  return r.stdout.trim() ? (JSON.parse(r.stdout) as CniResult) : undefined;
}

// ---- verbs -------------------------------------------------------------------------------

export async function cmdAdd(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<CniResult> {
  const args = parseCniArgs(env.args);
  const epId = endpointIdFor(env.containerId, env.ifName);
  return Tx.run((msg, f) => rt.log.warn(f, msg), async (tx) => {
    // Network creation, address allocation and the endpoint record happen under the network's
    // lock, so a DEL removing the last attachment (and with it a CNI-made network) cannot race.
    const { net, ep, addresses, ipamRoutes } = await withFileLock(netLock(rt, conf), async () => {
      const net = await ensureNetwork(rt, conf);
      tx.onUndo('drop the network if this ADD made it and nothing else uses it', () => dropNetworkIfUnused(rt, conf));
      if (await rt.networks.getEndpoint(net.id, epId)) {
        throw new CniError(CNI_CODES.INVALID_CONFIG, `container ${env.containerId} already has ${env.ifName} on network ${conf.name}; DEL it first`);
      }
      // Addresses: static requests (runtimeConfig.ips, args.cni.ips, CNI_ARGS IP) or the next free.
      let addresses: string[] = [];
      let ipamRoutes: Array<{ dst: string; gw?: string }> = conf.ipam?.routes ?? [];
      if (conf.ipam?.type === 'tsipam') {
        const subnets = [...net.state.subnets4, ...net.state.subnets6];
        tx.onUndo('release addresses', () => rt.ipam.releaseOwner(epId));
        for (const subnet of subnets) {
          const pool = await rt.ipam.ensurePool(subnet);
          const mine = requestedAddress(conf, args, subnet);
          addresses.push(await rt.ipam.requestAddress(pool.id, { owner: epId, ...(mine ? { address: mine } : {}) }));
        }
      } else if (conf.ipam) {
        const r = delegate(conf.ipam.type, env, 'ADD', conf.raw);
        tx.onUndo('IPAM DEL', () => delegate(conf.ipam!.type, env, 'DEL', conf.raw));
        addresses = (r?.ips ?? []).map((ip) => ip.address);
        ipamRoutes = [...ipamRoutes, ...(r?.routes ?? [])];
      }
      const mac = conf.mac ?? args.MAC;
      {
        let inside: NetlinkHandle;
        try {
          inside = await NetlinkHandle.open({ path: env.netns });
        } catch (e) {
          throw new CniError(CNI_CODES.INVALID_ENV, `CNI_NETNS ${env.netns} cannot be opened: ${(e as Error).message}`);
        }
        try {
          if (await inside.linkFind({ name: env.ifName })) throw new CniError(CNI_CODES.INVALID_CONFIG, `interface ${env.ifName} already exists in ${env.netns}`);
        } finally {
          await inside.close();
        }
      }
      const ep = await rt.networks.createEndpoint({
        id: epId, networkId: net.id,
        ...(addresses.find((a) => !a.includes(':')) ? { address4: addresses.find((a) => !a.includes(':'))! } : {}),
        ...(addresses.find((a) => a.includes(':')) ? { address6: addresses.find((a) => a.includes(':'))! } : {}),
        ...(mac ? { mac } : {}),
        sandbox: { netns: { path: env.netns }, ifName: env.ifName },
      });
      tx.onUndo('delete endpoint', () => rt.networks.deleteEndpoint(net.id, epId));
      return { net, ep, addresses, ipamRoutes };
    });
    const plan = await rt.networks.join(net.id, epId, env.netns);
    const inside = await applyInSandbox(rt.host, { path: env.netns }, {
      ifName: env.ifName, addresses,
      ...(plan.gateway4 ? { gateway4: plan.gateway4 } : {}),
      ...(plan.gateway6 ? { gateway6: plan.gateway6 } : {}),
      defaultRoute: conf.isDefaultGateway, routes: ipamRoutes,
    });
    tx.onUndo('remove interface', () => removeFromSandbox({ path: env.netns }, env.ifName));
    if (conf.hairpinMode === false) await rt.host.bridgePortSet({ name: bridgeEndpoint(ep).hostIf }, { hairpin: false });
    if (conf.portMappings.length) await rt.networks.programExternal(net.id, epId, conf.portMappings);
    const names = [...new Set([args.K8S_POD_NAME, ...conf.aliases, env.containerId.slice(0, 12)].filter((n): n is string => !!n))];
    await rt.networks.setEndpointNames(net.id, epId, names);

    const [bridge, hostVeth] = await Promise.all([rt.host.linkGet({ name: net.state.bridge }), rt.host.linkGet({ name: bridgeEndpoint(ep).hostIf })]);
    const gw = (ip: string): string | undefined => (ip.includes(':') ? plan.gateway6 : plan.gateway4);
    const routes = [
      ...(conf.isDefaultGateway && plan.gateway4 ? [{ dst: '0.0.0.0/0', gw: plan.gateway4 }] : []),
      ...(conf.isDefaultGateway && plan.gateway6 ? [{ dst: '::/0', gw: plan.gateway6 }] : []),
      ...ipamRoutes,
    ];
    const result: CniResult = {
      cniVersion: conf.cniVersion,
      interfaces: [
        { name: bridge.name, ...(bridge.mac ? { mac: bridge.mac } : {}) },
        { name: hostVeth.name, ...(hostVeth.mac ? { mac: hostVeth.mac } : {}) },
        { name: env.ifName, ...(inside.mac ? { mac: inside.mac } : {}), sandbox: env.netns, mtu: inside.mtu },
      ],
      ips: addresses.map((address) => ({ address, ...(gw(address) ? { gateway: gw(address)! } : {}), interface: 2 })),
      ...(routes.length ? { routes } : {}),
      dns: conf.dns ?? (plan.gateway4 ? { nameservers: [plan.gateway4], search: [rt.dnsDomain] } : {}),
    };
    // Chained after other plugins (rare for an interface plugin): keep what they reported.
    if (conf.prevResult) {
      const prev = conf.prevResult;
      const offset = prev.interfaces?.length ?? 0;
      return {
        ...result,
        interfaces: [...(prev.interfaces ?? []), ...(result.interfaces ?? [])],
        ips: [...(prev.ips ?? []), ...(result.ips ?? []).map((ip) => ({ ...ip, interface: (ip.interface ?? 0) + offset }))],
        routes: [...(prev.routes ?? []), ...(result.routes ?? [])],
      };
    }
    return result;
  });
}

/**
 * DEL's first step for a veth endpoint: the interface leaves the container. With the daemon,
 * deleting the endpoint retires its host end and the pair goes in the reaper's next batch, so the
 * container end only has to leave the container's view now: the network's leave step takes it
 * down and renames it aside. That spares DEL the kernel's deletion (grace periods and an
 * rcu_barrier, ~35 ms). Standalone, nothing runs after we exit: it is deleted here.
 */
export async function takeOutOfSandbox(rt: CniRuntime, env: CniEnv, networkId: string | undefined, epId: string): Promise<void> {
  if (networkId && rt.networks.defersLinkDeletion) await rt.networks.leave(networkId, epId);
  if (env.netns) await removeFromSandbox({ path: env.netns }, env.ifName);
}

/** Idempotent: gone netns, interface, endpoint or allocation are all fine. */
export async function cmdDel(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<void> {
  const epId = endpointIdFor(env.containerId, env.ifName);
  const net = await findNetwork(rt, conf);
  await takeOutOfSandbox(rt, env, net?.id, epId);
  if (net) {
    await rt.networks.revokeExternal(net.id, epId);
    await rt.networks.deleteEndpoint(net.id, epId);
  }
  if (conf.ipam?.type === 'tsipam') await rt.ipam.releaseOwner(epId);
  else if (conf.ipam) delegate(conf.ipam.type, env, 'DEL', conf.raw);
  await dropNetworkIfUnused(rt, conf);
}

export async function cmdCheck(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<void> {
  const epId = endpointIdFor(env.containerId, env.ifName);
  const net = await findNetwork(rt, conf);
  const ep = net && (await rt.networks.getEndpoint(net.id, epId));
  if (!net || !ep) throw new CniError(CNI_CODES.UNKNOWN_CONTAINER, `no attachment of ${env.containerId}/${env.ifName} on ${conf.name}`);
  await using c = await NetlinkHandle.open({ path: env.netns }).catch(() => {
    throw new CniError(CNI_CODES.INTERNAL, `netns ${env.netns} is not there`);
  });
  const link = await c.linkFind({ name: env.ifName });
  if (!link) throw new CniError(CNI_CODES.INTERNAL, `interface ${env.ifName} is missing in ${env.netns}`);
  const have = (await c.addrList({ link: { name: env.ifName } })).map((a) => a.cidr);
  const expected = (conf.prevResult?.ips ?? []).map((i) => i.address);
  for (const want of expected.length ? expected : [ep.spec.address4, ep.spec.address6].filter((x): x is string => !!x)) {
    if (!have.includes(want)) throw new CniError(CNI_CODES.INTERNAL, `address ${want} is missing on ${env.ifName} (has ${have.join(', ') || 'none'})`);
  }
  const routes = await c.routeList({});
  for (const r of conf.prevResult?.routes ?? []) {
    const dst = r.dst === '0.0.0.0/0' || r.dst === '::/0' ? 'default' : r.dst;
    if (!routes.some((x) => x.dst === dst && (!r.gw || x.gateway === r.gw))) throw new CniError(CNI_CODES.INTERNAL, `route to ${r.dst} is missing in ${env.netns}`);
  }
  const hostIf = bridgeEndpoint(ep).hostIf;
  if (!(await rt.host.linkFind({ name: hostIf }))) throw new CniError(CNI_CODES.INTERNAL, `host-side veth ${hostIf} is missing`);
}

/** Frees attachments of this network that the runtime no longer lists as valid; reports what went. */
export async function cmdGc(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<string[]> {
  const valid = new Set((conf.validAttachments ?? []).map((a) => endpointIdFor(a.containerID, a.ifname)));
  const net = await findNetwork(rt, conf);
  const removed: string[] = [];
  const errors: string[] = [];
  if (net) {
    for (const ep of await rt.networks.listEndpoints(net.id)) {
      if (valid.has(ep.id)) continue;
      try {
        await rt.networks.revokeExternal(net.id, ep.id);
        await rt.networks.deleteEndpoint(net.id, ep.id);
        await rt.ipam.releaseOwner(ep.id);
        removed.push(ep.id);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    // Addresses whose owner is an attachment this network no longer has (e.g. an ADD cut short).
    if (conf.ipam?.type === 'tsipam') {
      for (const subnet of [...net.state.subnets4, ...net.state.subnets6]) {
        const pool = await rt.ipam.ensurePool(subnet);
        const live = new Set((await rt.networks.listEndpoints(net.id)).map((e) => e.id));
        for (const a of await rt.ipam.listAddresses(pool.id)) {
          if (a.kind === 'endpoint' && /^[0-9a-f]{64}$/.test(a.owner) && !live.has(a.owner) && !valid.has(a.owner)) {
            await rt.ipam.releaseOwner(a.owner);
            removed.push(a.owner);
          }
        }
      }
    }
  }
  if (conf.ipam && conf.ipam.type !== 'tsipam') delegate(conf.ipam.type, env, 'GC', conf.raw);
  if (errors.length) throw new CniError(CNI_CODES.INTERNAL, `GC finished with errors: ${errors.join('; ')}`);
  return removed;
}

/** Maps our errors to CNI codes. */
export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  const msg = (e as Error)?.message ?? String(e);
  switch (netCodeOf(e)) {
    case 'INVALID_ARGUMENT':
    case 'UNSUPPORTED_OPTION':
    case 'POOL_OVERLAP':
    case 'ADDRESS_OUT_OF_RANGE':
      return new CniError(CNI_CODES.INVALID_CONFIG, msg);
    case 'TRY_AGAIN':
    case 'UNAVAILABLE':
      return new CniError(CNI_CODES.TRY_AGAIN, msg);
    default:
      return new CniError(CNI_CODES.INTERNAL, msg);
  }
}

export { NetError };
