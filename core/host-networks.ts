// Subnets a default address pool must avoid on this host.

import { readFile } from 'node:fs/promises';
import type { NetlinkHandle } from '../kernel/netlink.js';

/** Subnets a default pool must avoid: the host's routes and its resolvers (Docker loops otherwise). */
export async function hostNetworks(nl: NetlinkHandle): Promise<string[]> {
  const routes = (await nl.routeList()).filter((r) => r.dst !== 'default').map((r) => r.dst);
  const resolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const servers = [...resolv.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => (m[1]!.includes(':') ? `${m[1]}/128` : `${m[1]}/32`));
  return [...routes, ...servers];
}
