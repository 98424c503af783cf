// What one CNI invocation needs: the shared store, IPAM, netlink and the network service, and
// nothing else (no HTTP server, resolver or Docker client), so a standalone plugin starts fast.

import { join } from 'node:path';
import type { Logger } from 'pino';
import { IptablesFirewall } from '../kernel/firewall/iptables.js';
import { NetlinkHandle } from '../kernel/netlink.js';
import { Ipam } from '../ipam/ipam.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { hostNetworks } from './host-networks.js';
import { NetworkService } from './network-service.js';
import { ownerMac, ownerMark } from './owner.js';

/** What a CNI invocation needs: the shared store, IPAM and network service, no sockets. */
export async function openCniRuntime(stateDir: string, log: Logger) {
  const store = new SqliteStore(join(stateDir, 'tsnet.db'));
  const host = await NetlinkHandle.open();
  const firewall = new IptablesFirewall();
  const ipam = new Ipam(store, { hostNetworks: () => hostNetworks(host), log: (msg, f) => log.warn(f ?? {}, msg) });
  const owner = await ownerMark(store);
  const networks = new NetworkService(store, { host, firewall, log, owner, ownedMac: (stableFor?: string) => ownerMac(owner, stableFor) });
  return {
    store, networks, ipam, host, stateDir, log, dnsDomain: 'tsnet.internal',
    async close() {
      networks.reserver.closeAll();
      await host.close();
      await store.close();
    },
  };
}
