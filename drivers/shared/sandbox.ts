// Applies a join plan inside a container's namespace, for front-ends that have no runtime doing it
// (CNI; Docker does this itself). The interface arrives in the host namespace under a temporary
// name, is moved in, renamed, addressed, brought up and given its routes.

import { NetError } from '../../kernel/errors.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import { ifaceSysctl } from '../../kernel/sysctl.js';
import type { NetnsRef } from '../../kernel/types.js';

export interface SandboxPlan {
  /** Interface in the host namespace, moved into the sandbox; absent when it was created there. */
  hostSideName?: string;
  ifName: string;
  addresses: string[];
  gateway4?: string;
  gateway6?: string;
  defaultRoute: boolean;
  routes: Array<{ dst: string; gw?: string }>;
}

/**
 * The IPv6 sysctl a container interface gets from us (inside its sandbox, before it goes up).
 * IPv4-only: IPv6 off (what Docker does since CVE-2024-32473: no SLAAC address from a stray router
 * advertisement on an interface the network gave no IPv6). It also keeps each container from
 * sending router solicitations, MLD reports and DAD probes that the bridge floods to every port, a
 * load that grows with the square of the endpoints and slowed attaches at 1,000 of them.
 * Otherwise: no duplicate address detection, so addresses are usable at once.
 */
export function containerIpv6Setting(ifName: string, ipv4Only: boolean): [string[], string] {
  return ipv4Only ? [ifaceSysctl('ipv6', ifName, 'disable_ipv6'), '1'] : [ifaceSysctl('ipv6', ifName, 'accept_dad'), '0'];
}

export async function applyInSandbox(host: NetlinkHandle, netns: NetnsRef, plan: SandboxPlan): Promise<{ mac?: string; mtu: number }> {
  await using c = await NetlinkHandle.open(netns);
  if (plan.hostSideName) {
    if (await c.linkFind({ name: plan.ifName })) {
      throw new NetError('ALREADY_EXISTS', `interface ${plan.ifName} already exists in the container`);
    }
    await host.linkSet({ name: plan.hostSideName }, { netns });
    await c.linkSet({ name: plan.hostSideName }, { name: plan.ifName });
  }
  // Every step goes to the sandbox handle's lane at once; the lane runs them in this order (the
  // IPv6 sysctl before the interface goes up), back to back. A failure rejects the whole, and the
  // caller's transaction removes the interface, whatever ran after it.
  const ipv4Only = !plan.addresses.some((a) => a.includes(':'));
  const steps: Array<Promise<unknown>> = [
    // IPv6 off on an IPv4-only interface, else no duplicate address detection (see above).
    // Best effort: a kernel without IPv6 has no such sysctl.
    c.sysctlSet(...containerIpv6Setting(plan.ifName, ipv4Only)).catch(() => undefined),
    ...plan.addresses.map((a) => c.addrAdd({ name: plan.ifName }, a, { nodad: a.includes(':') })),
    c.linkSetUp({ name: plan.ifName }),
    c.linkSetUp({ name: 'lo' }).catch(() => undefined),
  ];
  if (plan.defaultRoute && plan.gateway4) steps.push(c.routeReplace({ dst: 'default', gateway: plan.gateway4, dev: { name: plan.ifName } }));
  if (plan.defaultRoute && plan.gateway6) steps.push(c.routeReplace({ dst: 'default', gateway: plan.gateway6, dev: { name: plan.ifName }, family: 6 }));
  for (const r of plan.routes) {
    const family = r.dst.includes(':') ? 6 : 4;
    const gw = r.gw ?? (family === 4 ? plan.gateway4 : plan.gateway6);
    steps.push(c.routeReplace({ dst: r.dst === '0.0.0.0/0' || r.dst === '::/0' ? 'default' : r.dst, family, ...(gw ? { gateway: gw } : {}), dev: { name: plan.ifName } }));
  }
  const link = c.linkGet({ name: plan.ifName });
  await Promise.all([...steps, link]);
  const { mac, mtu } = await link;
  return { ...(mac ? { mac } : {}), mtu };
}

/** Removes the interface from the container; a missing namespace or interface is fine. */
export async function removeFromSandbox(netns: NetnsRef, ifName: string): Promise<void> {
  let c: NetlinkHandle;
  try {
    c = await NetlinkHandle.open(netns);
  } catch {
    return; // the namespace is gone, and the veth with it
  }
  try {
    await c.linkDelIfExists({ name: ifName });
  } finally {
    await c.close();
  }
}
