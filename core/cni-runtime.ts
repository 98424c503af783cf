// What one CNI invocation needs: the shared store, IPAM, netlink and the network service, and
// nothing else (no HTTP server, resolver or Docker client), so a standalone plugin starts fast.

import { join } from 'node:path';
import { IptablesFirewall } from '../kernel/firewall/iptables.js';
import type { NetnsRef } from '../kernel/types.js';
import type { Logger } from '../drivers/driver.js';
import type { LinkReaper } from '../drivers/shared/reaper.js';
import { NetlinkHandle } from '../kernel/netlink.js';
import { Ipam } from '../ipam/ipam.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { hostNetworks } from './host-networks.js';
import { NetworkService } from './network-service.js';
import { ownerMac, ownerMark } from './owner.js';

export interface CniRuntimeOptions {
  /** The namespace that is the runtime's host (default: this process's). */
  hostNs?: NetnsRef;
  /** Default: iptables in this process's namespace. */
  firewall?: IptablesFirewall;
  /** Deletes veths in the background; absent, deletion is synchronous (a CNI call). */
  reaper?: LinkReaper;
}

/** What a CNI invocation needs: the shared store, IPAM and network service, no sockets. */
export async function openCniRuntime(stateDir: string, log: Logger, opts: CniRuntimeOptions = {}) {
  const store = new SqliteStore(join(stateDir, 'tsnet.db'));
  const host = await NetlinkHandle.open(opts.hostNs);
  const firewall = opts.firewall ?? new IptablesFirewall();
  const ipam = new Ipam(store, { hostNetworks: () => hostNetworks(host), log: (msg, f) => log.warn(f ?? {}, msg) });
  const owner = await ownerMark(store);
  const networks = new NetworkService(store, {
    host, firewall, log, owner, ownedMac: (stableFor?: string) => ownerMac(owner, stableFor), ...(opts.reaper ? { reaper: opts.reaper } : {}),
  });
  return {
    store, networks, ipam, host, stateDir, log, dnsDomain: 'tsnet.internal',
    async close() {
      networks.reserver.closeAll();
      await host.close();
      await store.close();
    },
  };
}
