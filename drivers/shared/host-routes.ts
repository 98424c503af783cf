// Routes of the host that a new network's subnet must stay clear of.

import { overlaps, parseSubnet } from '../../ipam/subnet.js';
import type { DriverContext } from '../driver.js';

const RTN_UNICAST = 1;

/**
 * A route of the host's that reaches part of `subnets` directly through an interface, as an error
 * message. The gateway interface's own on-link route (a tsbridge bridge, tsoverlay's gateway veth)
 * would compete with it, and one of the two would lose its traffic (docker0 and
 * its containers, another runtime's bridge, the host's LAN). Routes through a gateway are left
 * alone: a more specific bridge route beside a VPN's 10/8 is what the user asked for. The caller
 * has already refused overlaps with tsnet's own networks, so any route found is someone else's.
 */
export async function directRouteOverlap(ctx: DriverContext, subnets: readonly string[]): Promise<string | undefined> {
  if (!subnets.length) return undefined;
  const wanted = subnets.map((s) => ({ s, p: parseSubnet(s) }));
  for (const r of await ctx.host.routeList()) {
    if (r.dst === 'default' || r.gateway || r.type !== RTN_UNICAST || r.oif === undefined) continue;
    const hit = wanted.find((w) => overlaps(w.p, parseSubnet(r.dst)));
    if (!hit) continue;
    const dev = (await ctx.host.linkFind({ index: r.oif }))?.name ?? `#${r.oif}`;
    return `subnet ${hit.s} overlaps ${r.dst}, which this host reaches directly through ${dev}; a network here would take that traffic. Choose a subnet that no interface of the host uses`;
  }
  return undefined;
}
