// The tsmacvlan CNI plugin: a macvlan on the host uplink `master` (the reference plugin's name
// for the parent), created directly inside the container's namespace under its final name, with
// addresses from tsipam (in-process) or any delegated IPAM plugin. No bridge, no NAT.

import { NetlinkHandle } from '../kernel/netlink.js';
import type { MacvlanMode } from '../kernel/types.js';
import { applyInSandbox, removeFromSandbox } from '../drivers/shared/sandbox.js';
import { Tx } from '../core/tx.js';
import { endpointIdFor, type CniRuntime } from './commands.js';
import { parseCniArgs, requestedAddress, type BridgeConf } from './conf.js';
import { CNI_CODES, CniError, type CniEnv, type CniResult } from './types.js';

const MODES: readonly MacvlanMode[] = ['bridge', 'private', 'vepa', 'passthru'];

function macvlanConf(conf: BridgeConf): { master: string; mode: MacvlanMode; mtu?: number } {
  const raw = conf.raw;
  if (typeof raw.master !== 'string' || !raw.master) throw new CniError(CNI_CODES.INVALID_CONFIG, 'tsmacvlan needs "master" (the host uplink)');
  const mode = (raw.mode ?? 'bridge') as MacvlanMode;
  if (!MODES.includes(mode)) throw new CniError(CNI_CODES.INVALID_CONFIG, `mode must be one of ${MODES.join(', ')}`);
  return { master: raw.master, mode, ...(conf.mtu ? { mtu: conf.mtu } : {}) };
}

export async function macvlanAdd(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<CniResult> {
  const { master, mode, mtu } = macvlanConf(conf);
  const owner = endpointIdFor(env.containerId, env.ifName);
  const args = parseCniArgs(env.args);
  const parent = await rt.host.linkFind({ name: master });
  if (!parent) throw new CniError(CNI_CODES.INVALID_CONFIG, `master interface ${master} does not exist`);
  if (!parent.up) throw new CniError(CNI_CODES.INVALID_CONFIG, `master interface ${master} is down`);
  return Tx.run((m, f) => rt.log.warn(f, m), async (tx) => {
    // Addresses and gateways: tsipam (the gateway is the LAN's router, never put on the host).
    const ips: Array<{ address: string; gateway?: string }> = [];
    let routes = conf.ipam?.routes ?? [];
    if (conf.ipam?.type === 'tsipam') {
      tx.onUndo('release addresses', () => rt.ipam.releaseOwner(owner));
      for (const s of conf.ipam.subnets) {
        const pool = await rt.ipam.ensurePool(s.subnet);
        if (s.gateway) await rt.ipam.requestAddress(pool.id, { owner: `gateway:${pool.id}`, kind: 'gateway', address: s.gateway }).catch(() => undefined);
        const mine = requestedAddress(conf, args, s.subnet);
        ips.push({ address: await rt.ipam.requestAddress(pool.id, { owner, ...(mine ? { address: mine } : {}) }), ...(s.gateway ? { gateway: s.gateway } : {}) });
      }
    } else if (conf.ipam) {
      throw new CniError(CNI_CODES.INVALID_CONFIG, 'tsmacvlan supports ipam type tsipam (use tsipam with subnet and gateway)');
    }
    const netns = { path: env.netns };
    {
      await using c = await NetlinkHandle.open(netns).catch((e) => {
        throw new CniError(CNI_CODES.INVALID_ENV, `CNI_NETNS ${env.netns} cannot be opened: ${(e as Error).message}`);
      });
      if (await c.linkFind({ name: env.ifName })) throw new CniError(CNI_CODES.INVALID_CONFIG, `interface ${env.ifName} already exists in ${env.netns}`);
    }
    const mac = conf.mac ?? args.MAC;
    await rt.host.linkAdd({ kind: 'macvlan', name: env.ifName, parent: { name: master }, mode, netns, mtu: mtu ?? parent.mtu, ...(mac ? { mac } : {}) });
    tx.onUndo('remove interface', () => removeFromSandbox(netns, env.ifName));
    const gw4 = ips.find((i) => !i.address.includes(':'))?.gateway;
    const gw6 = ips.find((i) => i.address.includes(':'))?.gateway;
    const inside = await applyInSandbox(rt.host, netns, {
      ifName: env.ifName, addresses: ips.map((i) => i.address),
      ...(gw4 ? { gateway4: gw4 } : {}), ...(gw6 ? { gateway6: gw6 } : {}),
      defaultRoute: true, routes,
    });
    routes = [...(gw4 ? [{ dst: '0.0.0.0/0', gw: gw4 }] : []), ...(gw6 ? [{ dst: '::/0', gw: gw6 }] : []), ...routes];
    return {
      cniVersion: conf.cniVersion,
      interfaces: [{ name: env.ifName, ...(inside.mac ? { mac: inside.mac } : {}), sandbox: env.netns, mtu: inside.mtu }],
      ips: ips.map((i) => ({ ...i, interface: 0 })),
      ...(routes.length ? { routes } : {}),
      ...(conf.dns ? { dns: conf.dns } : {}),
    };
  });
}

/** Idempotent: a missing netns or interface is fine; the addresses are released either way. */
export async function macvlanDel(rt: CniRuntime, env: CniEnv): Promise<void> {
  if (env.netns) await removeFromSandbox({ path: env.netns }, env.ifName);
  await rt.ipam.releaseOwner(endpointIdFor(env.containerId, env.ifName));
}

export async function macvlanCheck(env: CniEnv, conf: BridgeConf): Promise<void> {
  await using c = await NetlinkHandle.open({ path: env.netns }).catch(() => {
    throw new CniError(CNI_CODES.INTERNAL, `netns ${env.netns} is not there`);
  });
  const link = await c.linkFind({ name: env.ifName });
  if (!link || link.kind !== 'macvlan') throw new CniError(CNI_CODES.INTERNAL, `macvlan ${env.ifName} is missing in ${env.netns}`);
  const have = (await c.addrList({ link: { name: env.ifName } })).map((a) => a.cidr);
  for (const want of (conf.prevResult?.ips ?? []).map((i) => i.address)) {
    if (!have.includes(want)) throw new CniError(CNI_CODES.INTERNAL, `address ${want} is missing on ${env.ifName}`);
  }
}
