// The endpoint of a bridge-based driver (tsbridge, tsoverlay): a veth pair whose host end is a
// port of the network's bridge and whose other end goes to the container.

import { isKernelError, isNotFound } from '../../kernel/errors.js';
import { ifaceSysctl } from '../../kernel/sysctl.js';
import type { Tx } from '../../core/tx.js';
import type { DriverContext, EndpointSpec } from '../driver.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import type { Link, LinkChange, LinkId, NetnsRef } from '../../kernel/types.js';

/** A bridge in the host namespace (a name), or in another namespace (a handle bound to it). */
export type BridgeRef = string | { bridge: string; in: NetlinkHandle; netns: NetnsRef };

export interface VethEndpointState {
  hostIf: string;
  containerIf: string;
  mac?: string;
  /** The container end was created inside the sandbox (CNI), not in the host namespace. */
  inSandbox?: boolean;
}

/** Names of an endpoint's veth ends; `aside` is what a left container end is renamed to (never ethN). */
const vethNames = (endpointId: string) => ({
  host: `tsv${endpointId.slice(0, 12)}`, container: `tsc${endpointId.slice(0, 12)}`, aside: `tsx${endpointId.slice(0, 12)}`,
});

/** Docker's convention: 02:42 followed by the IPv4 address, so MACs are stable and readable. */
export function macFromIpv4(cidr: string): string {
  const parts = cidr.split('/')[0]!.split('.').map(Number);
  return ['02', '42', ...parts.map((p) => p.toString(16).padStart(2, '0'))].join(':');
}

export async function attachVeth(ctx: DriverContext, where: BridgeRef, mtu: number | undefined, ep: EndpointSpec, tx: Tx): Promise<VethEndpointState> {
  const names = vethNames(ep.id);
  const bridge = typeof where === 'string' ? where : where.bridge;
  // The bridge end is made where the bridge is; the container end in the sandbox (CNI) or here.
  const side = typeof where === 'string' ? ctx.host : where.in;
  const mac = ep.mac || (ep.address4 ? macFromIpv4(ep.address4) : undefined);
  const containerIf = ep.sandbox?.ifName ?? names.container;
  // The bridge end is made a port of the bridge in its create request, and set up once its IPv6
  // is off (below).
  const bridgeIndex = (await side.linkGet({ name: bridge })).index;
  const create = () => ctx.host.linkAdd({
    kind: 'veth', name: names.host, ...(mtu ? { mtu } : {}), ...(typeof where === 'string' ? {} : { netns: where.netns }),
    master: { index: bridgeIndex },
    // The host end's MAC is never addressed; it carries the store's mark from the first instant.
    ...(ctx.ownedMac ? { mac: ctx.ownedMac() } : {}),
    peer: { name: containerIf, ...(mac ? { mac } : {}), ...(mtu ? { mtu } : {}), ...(ep.sandbox ? { netns: ep.sandbox.netns } : {}) },
  });
  let made: Link | undefined;
  try {
    made = await create();
  } catch (e) {
    // The same endpoint detached a moment ago (a CNI DEL then ADD) may still await its batched
    // deletion under this name: let the reaper finish, then try once more.
    if (!ctx.reaper || !isKernelError(e, 'EEXIST')) throw e;
    await ctx.reaper.drain();
    made = await create();
  }
  tx.onUndo(`delete veth ${names.host}`, () => side.linkDelIfExists({ name: names.host }));
  const hostEnd = made && typeof where === 'string' ? { index: made.index } : { name: names.host };
  // Hairpin lets a container reach its own published port through the host address (tsbridge;
  // an overlay's gateway is a port of its own, so its frames never need to turn back).
  const hairpin = typeof where === 'string' ? { bridgePort: { hairpin: true } } : {};
  const mark = ctx.owner ? { alias: ctx.owner } : {};
  // The container end's IPv6 setting is made where it is configured: applyInSandbox (CNI); dockerd
  // moves it into the container itself, and a move resets per-interface sysctls.
  await upAsBridgePort(side, names.host, { ...mark, ...hairpin }, hostEnd);
  return { hostIf: names.host, containerIf, ...(mac ? { mac } : {}), ...(ep.sandbox ? { inSandbox: true } : {}) };
}

/**
 * Sets up a veth end that is a bridge port (an endpoint's bridge end, tsoverlay's gateway port),
 * with IPv6 switched off on it first. It carries frames, never addresses of its own, so the kernel
 * gives it no link-local address, no fe80::/64 and ff00::/8 routes and no MLD reports (LXD does the
 * same for its bridged host ends). Besides keeping the host's address list clean, this keeps the
 * IPv6 routing table from growing with every endpoint: the kernel walks that table on each link
 * event in the namespace, so with a thousand endpoints every attach, group move and deletion paid
 * for it. Both requests go to the handle's lane at once, and the lane runs them in order. The
 * sysctl is best effort: a kernel without IPv6 has none.
 */
export async function upAsBridgePort(h: NetlinkHandle, name: string, change: LinkChange = {}, id: LinkId = { name }): Promise<void> {
  await Promise.all([
    h.sysctlSet(ifaceSysctl('ipv6', name, 'disable_ipv6'), '1').catch(() => undefined),
    h.linkSet(id, { ...change, up: true }),
  ]);
}

/**
 * Leave, with the container end still in the sandbox: the end is taken down and renamed aside
 * there (for CNI, see cmdDel).
 *
 * Docker's path: Docker's next step would be to set it down, rename it and move it back to
 * the host namespace, only for us to delete it; the move alone costs the kernel an rcu_barrier()
 * (13 ms a move on this VM, perf sched). Finding no interface under the name it gave, dockerd
 * skips all three (libnetwork logs that at debug level and goes on). The end dies with its peer
 * when the endpoint is deleted, or with the sandbox, whichever comes first.
 *
 * Only our own veth is touched: the link at the host end's peer index must be a veth whose peer
 * is that host end. Anything unexpected leaves the sandbox alone, and Docker does what it always did.
 */
export async function setAsideInSandbox(ctx: DriverContext, endpointId: string, ep: VethEndpointState, sandbox: NetnsRef, bridgeSide: NetlinkHandle = ctx.host): Promise<void> {
  const hostEnd = await bridgeSide.linkFind({ name: ep.hostIf });
  // A peer still beside its host end was never moved (or made) anywhere: no sandbox to open.
  if (hostEnd?.parentIndex === undefined || !hostEnd.parentElsewhere) return;
  await using sb = await NetlinkHandle.open(sandbox);
  const end = await sb.linkFind({ index: hostEnd.parentIndex });
  if (!end || end.kind !== 'veth' || end.parentIndex !== hostEnd.index || (ep.mac && end.mac !== ep.mac)) return;
  // A link is renamed only while down.
  await sb.linkSet({ index: end.index }, { up: false });
  await sb.linkSet({ index: end.index }, { name: vethNames(endpointId).aside });
}

/** After Leave, Docker moves the container end back to the host; deleting either end removes both. */
export async function detachVeth(ctx: DriverContext, ep: VethEndpointState, bridgeSide: NetlinkHandle = ctx.host): Promise<void> {
  // A container end made inside a sandbox is never in the host namespace: only the host end counts.
  const ends: Array<[NetlinkHandle, string]> = [[bridgeSide, ep.hostIf], ...(ep.inSandbox ? [] : [[ctx.host, ep.containerIf] as [NetlinkHandle, string]])];
  for (const [h, name] of ends) {
    if (ctx.reaper) {
      if (await ctx.reaper.retire(h, name)) return;
      continue;
    }
    try {
      await h.linkDel({ name });
      return;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
}
