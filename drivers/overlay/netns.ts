// Each overlay network has its own network namespace per host, holding its bridge and VXLAN port
// (Docker's overlay driver does the same). Frames between containers are then switched where no
// iptables table exists: br_netfilter, which dockerd and kube-proxy turn on in the host namespace,
// would otherwise send every bridged frame through the host's netfilter hooks (measured: about
// 10% of VXLAN throughput). The host namespace keeps the gateway (a veth into that bridge), so
// NAT, published ports and DNS work exactly as for tsbridge.

import { createHash } from 'node:crypto';
import { NetlinkHandle } from '../../kernel/netlink.js';
import { createNetns, deleteNetns, netnsByName, netnsExists } from '../../kernel/netns.js';
import type { NetnsRef } from '../../kernel/types.js';

/** Unique per host (its VTEP address) and network (VNI): several daemons may share /run/netns. */
export function overlayNetnsName(vtep: string, vni: number): string {
  const v4 = /^\d+\.\d+\.\d+\.\d+$/.test(vtep);
  const tag = v4
    ? vtep.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('')
    : createHash('sha256').update(vtep).digest('hex').slice(0, 8);
  return `tsovl-${tag}-${vni}`;
}

const handles = new Map<string, Promise<NetlinkHandle>>();

/** A netlink handle bound to the overlay namespace, opened once and kept. */
export function overlayHandle(name: string): Promise<NetlinkHandle> {
  let h = handles.get(name);
  if (!h) {
    h = NetlinkHandle.open(netnsByName(name));
    handles.set(name, h);
    h.catch(() => handles.delete(name));
  }
  return h;
}

export async function createOverlayNetns(name: string): Promise<NetnsRef> {
  const ref = netnsByName(name);
  // A namespace left by a daemon killed half-way through a create: start clean.
  if (await netnsExists(ref)) await removeOverlayNetns(name);
  return createNetns(name);
}

/** Closes our handle and removes the namespace (everything in it goes too). Idempotent. */
export async function removeOverlayNetns(name: string): Promise<void> {
  const h = handles.get(name);
  handles.delete(name);
  if (h) await h.then((x) => x.close()).catch(() => undefined);
  await deleteNetns(name).catch(() => undefined);
}

export async function closeOverlayHandles(): Promise<void> {
  const all = [...handles.values()];
  handles.clear();
  await Promise.all(all.map((h) => h.then((x) => x.close()).catch(() => undefined)));
}
