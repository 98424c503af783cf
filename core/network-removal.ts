// Removing a network with everything it holds, when its front-end will not (Docker forgot it
// while the daemon was away; an operator's `tsnet network rm` of a leftover).

import { LOCAL_SPACE, type Ipam } from '../ipam/ipam.js';
import { parseSubnet } from '../ipam/subnet.js';
import type { NetworkRecord, NetworkService } from './network-service.js';

export interface Removal {
  endpoints: string[];
  /** Subnets of the tsipam pools given back. */
  pools: string[];
}

const cidr = (s: string): string | undefined => {
  try {
    return parseSubnet(s, true).cidr;
  } catch {
    return undefined;
  }
};

const subnetsOf = (n: NetworkRecord): string[] => [...n.spec.ipv4, ...n.spec.ipv6].map((s) => s.subnet);

/**
 * Endpoints first, one by one (each gives back its host ports and addresses), then the network,
 * then the tsipam pools of its subnets that no other tsnet network uses, nor any of
 * `subnetsInUseElsewhere` (Docker's networks, say). A pool goes whatever its reference count:
 * whoever requested it is not going to release it.
 */
export async function removeNetworkEntirely(svc: NetworkService, ipam: Ipam | undefined, n: NetworkRecord, subnetsInUseElsewhere: readonly string[] = []): Promise<Removal> {
  const out: Removal = { endpoints: [], pools: [] };
  for (const ep of await svc.listEndpoints(n.id)) {
    await svc.deleteEndpoint(n.id, ep.id);
    out.endpoints.push(ep.id);
  }
  await svc.deleteNetwork(n.id);
  if (!ipam) return out;
  const mine = new Set(subnetsOf(n).map(cidr).filter((s): s is string => !!s));
  const inUse = new Set([...(await svc.listNetworks()).flatMap(subnetsOf), ...subnetsInUseElsewhere].map(cidr).filter((s): s is string => !!s));
  for (const p of await ipam.listPools()) {
    if (p.addressSpace !== LOCAL_SPACE || !mine.has(p.subnet) || inUse.has(p.subnet)) continue;
    for (let i = 0; i <= p.refs && !(await ipam.releasePool(p.id)).released; i++);
    out.pools.push(p.subnet);
  }
  return out;
}

/**
 * Why `tsnet network rm` should not go ahead, if it should not: containers still attached lose
 * their interface, so that takes --force. (Docker's own networks are best removed with `docker
 * network rm`; this is for what no front-end will remove any more.)
 */
export async function removalRefusal(svc: NetworkService, n: NetworkRecord, force: boolean): Promise<string | undefined> {
  if (force) return undefined;
  const eps = await svc.listEndpoints(n.id);
  if (!eps.length) return undefined;
  return `network ${n.id.slice(0, 12)} has ${eps.length} endpoint(s); their containers would lose the interface (use --force to remove anyway)`;
}
