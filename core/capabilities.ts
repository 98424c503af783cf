// The Linux capabilities the daemon needs, checked at start so a missing one is named up front
// instead of surfacing later as EPERM from some netlink call.

import { readFileSync } from 'node:fs';

export const REQUIRED_CAPABILITIES: ReadonlyArray<{ bit: number; name: string; why: string }> = [
  { bit: 12, name: 'CAP_NET_ADMIN', why: 'links, addresses, routes, iptables' },
  { bit: 13, name: 'CAP_NET_RAW', why: 'iptables and conntrack' },
  { bit: 21, name: 'CAP_SYS_ADMIN', why: 'entering and creating network namespaces' },
  { bit: 10, name: 'CAP_NET_BIND_SERVICE', why: 'DNS on port 53' },
];

/** The required capabilities missing from this process's effective set (`status` for tests). */
export function missingCapabilities(status = readFileSync('/proc/self/status', 'utf8')): typeof REQUIRED_CAPABILITIES[number][] {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (!hex) return [...REQUIRED_CAPABILITIES];
  const eff = BigInt(`0x${hex}`);
  return REQUIRED_CAPABILITIES.filter((c) => ((eff >> BigInt(c.bit)) & 1n) === 0n);
}
