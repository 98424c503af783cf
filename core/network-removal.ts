// Removing a network with everything it holds, when its front-end will not (Docker forgot it
// while the daemon was away; an operator's `tsnet network rm` of a leftover).

import { LOCAL_SPACE, type Ipam } from '../ipam/ipam.js';
import { parseSubnet } from '../ipam/subnet.js';
import type { Store } from '../store/store.js';
import { findNetwork, noSuchNetwork, readInventory } from './inventory.js';
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
    await ipam.releasePool(p.id, { everyRef: true });
    out.pools.push(p.subnet);
  }
  return out;
}

export type RemovalByRef =
  | { outcome: 'removed'; network: string; endpoints: string[]; pools: string[] }
  | { outcome: 'not-found' | 'refused'; message: string };

/**
 * `tsnet network rm REF` (through the daemon or on the store directly): the network REF names,
 * unless it still has endpoints and `force` is not given, since their containers would lose the
 * interface. (Docker's own networks are best removed with `docker network rm`; this is for what
 * no front-end will remove any more.)
 */
export async function removeNetworkByRef(store: Store, svc: NetworkService, ipam: Ipam | undefined, ref: string, force: boolean): Promise<RemovalByRef> {
  const n = findNetwork(await readInventory(store), ref);
  if (!n) return { outcome: 'not-found', message: noSuchNetwork(ref) };
  const eps = await svc.listEndpoints(n.id);
  if (eps.length && !force) {
    return { outcome: 'refused', message: `network ${n.id.slice(0, 12)} has ${eps.length} endpoint(s); their containers would lose the interface (use --force to remove anyway)` };
  }
  return { outcome: 'removed', network: n.id, ...(await removeNetworkEntirely(svc, ipam, n)) };
}
