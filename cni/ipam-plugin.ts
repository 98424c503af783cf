// tsipam as a CNI IPAM plugin, for interface plugins of others (the reference bridge, macvlan):
// ADD returns the abbreviated result (ips, routes), DEL frees what the attachment holds, GC
// frees attachments not in the valid list.

import type { BridgeConf } from './conf.js';
import { endpointIdFor, type CniRuntime } from './commands.js';
import { CNI_CODES, CniError, type CniEnv, type CniResult } from './types.js';
import { parseCniArgs, requestedAddress } from './conf.js';

export async function ipamAdd(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<CniResult> {
  const ipam = conf.ipam;
  if (!ipam || ipam.type !== 'tsipam' || !ipam.subnets.length) {
    throw new CniError(CNI_CODES.INVALID_CONFIG, 'tsipam needs ipam.subnet, ipam.ranges or runtimeConfig.ipRanges');
  }
  const owner = endpointIdFor(env.containerId, env.ifName);
  const args = parseCniArgs(env.args);
  const ips: CniResult['ips'] = [];
  try {
    for (const s of ipam.subnets) {
      const pool = await rt.ipam.ensurePool(s.subnet);
      const mine = requestedAddress(conf, args, s.subnet);
      // The gateway is reserved first (the first address unless configured), so no container gets it.
      const gateway = await poolGateway(rt, pool.id, s.gateway);
      const address = await rt.ipam.requestAddress(pool.id, { owner, ...(mine ? { address: mine } : {}) });
      ips.push({ address, gateway });
    }
  } catch (e) {
    await rt.ipam.releaseOwner(owner);
    throw e;
  }
  return { cniVersion: conf.cniVersion, ips, ...(ipam.routes.length ? { routes: ipam.routes } : {}) };
}

/** The pool's gateway: already reserved (kept), or reserved now. */
async function poolGateway(rt: CniRuntime, poolId: string, configured?: string): Promise<string> {
  const owner = `gateway:${poolId}`;
  const held = (await rt.ipam.listAddresses(poolId)).find((a) => a.kind === 'gateway');
  if (held && (!configured || held.ip === configured)) return held.ip;
  return (await rt.ipam.requestAddress(poolId, { owner, kind: 'gateway', ...(configured ? { address: configured } : {}) })).split('/')[0]!;
}

export async function ipamDel(rt: CniRuntime, env: CniEnv, gcConf?: BridgeConf): Promise<void> {
  if (!gcConf) {
    await rt.ipam.releaseOwner(endpointIdFor(env.containerId, env.ifName));
    return;
  }
  const valid = new Set((gcConf.validAttachments ?? []).map((a) => endpointIdFor(a.containerID, a.ifname)));
  for (const s of gcConf.ipam?.subnets ?? []) {
    const pool = await rt.ipam.ensurePool(s.subnet);
    for (const a of await rt.ipam.listAddresses(pool.id)) {
      if (a.kind === 'endpoint' && !valid.has(a.owner)) await rt.ipam.releaseOwner(a.owner);
    }
  }
}
