// Which store made a kernel object. Several tsnet stores can share one network namespace (a
// daemon, standalone CNI calls with another TSNET_STATE_DIR, tests), so "named tsv… and not in
// my records" does not mean leaked. Links tsnet creates carry "tsnet:<id>" in their alias (the
// id is kept in the store), and only links carrying this store's mark are ever removed as leaks.

import { createHash, randomBytes } from 'node:crypto';
import type { Store } from '../store/store.js';
import type { Link } from '../kernel/types.js';

const KEY = 'meta/owner';

export async function ownerMark(store: Store): Promise<string> {
  const id = await store.transact((t) => {
    const have = t.get<string>(KEY);
    if (have) return have;
    const made = randomBytes(6).toString('hex');
    t.put(KEY, made);
    return made;
  });
  return `tsnet:${id}`;
}

/**
 * A MAC that says which store made the link: set at creation (the kernel takes IFLA_ADDRESS in
 * the create request, not IFLA_IFALIAS), so a link is recognisable even if the daemon dies before
 * it could set the alias. 0e: locally administered unicast, then 3 bytes of the store id, then
 * 2 bytes: random, or from `stableFor` so that a link rebuilt under the same name (a gateway the
 * reconciler recreates) gets the same MAC and containers' neighbour caches stay right.
 */
export function ownerMac(owner: string, stableFor?: string): string {
  const r = stableFor === undefined ? randomBytes(2).toString('hex') : createHash('sha256').update(stableFor).digest('hex').slice(0, 4);
  return `${ownerMacPrefix(owner)}:${r.slice(0, 2)}:${r.slice(2, 4)}`;
}

/** The first four bytes ("0e:xx:yy:zz") of every MAC ownerMac gives for this owner. */
function ownerMacPrefix(owner: string): string {
  const id = owner.replace(/^tsnet:/, '').padEnd(6, '0').slice(0, 6);
  return ['0e', id.slice(0, 2), id.slice(2, 4), id.slice(4, 6)].join(':');
}

export function macOwnedBy(mac: string | undefined, owner: string): boolean {
  return !!mac && mac.startsWith(`${ownerMacPrefix(owner)}:`);
}

/** Names tsnet generates for the links it creates (veth ends, default bridges, overlay gateways). */
const GENERATED = /^(tsv[0-9a-f]{12}|tsc[0-9a-f]{12}|tsb-[0-9a-f]{11}|tso-\d+)$/;

/**
 * Whether this store made the link: its alias is the mark (set after creation), or it has a name
 * tsnet generates and a MAC from this store (a daemon killed between the two leaves only the MAC).
 */
export function linkOwnedBy(l: Link, owner: string): boolean {
  return l.alias === owner || (GENERATED.test(l.name) && macOwnedBy(l.mac, owner));
}
