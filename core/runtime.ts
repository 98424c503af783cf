// Wires the daemon together: store, IPAM, netlink, firewall, services, plugin sockets.

import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { pino } from 'pino';
import { startPluginSockets } from '../cnm/server.js';
import { IptablesFirewall } from '../kernel/firewall/iptables.js';
import { NetlinkHandle } from '../kernel/netlink.js';
import { Ipam } from '../ipam/ipam.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { NetworkService } from './network-service.js';
import { hostNetworks } from './host-networks.js';
import { DnsService } from './dns-service.js';
import { DockerNames } from '../cnm/docker-names.js';
import { DEFAULT_CNI_SOCKET, startCniServer } from '../cni/server.js';

export interface DaemonOptions {
  pluginDir: string;
  stateDir: string;
  logLevel: string;
  /** Port of the per-network resolvers (53 unless testing). */
  dnsPort?: number;
  /** Upstream resolvers; the host's resolv.conf when empty. */
  dnsUpstreams?: string[];
  dnsDomain?: string;
  dockerSocket?: string;
  /** Where installed CNI plugins reach the daemon. */
  cniSocket?: string;
}

export interface Daemon {
  networks: NetworkService;
  ipam: Ipam;
  dns: DnsService;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = pino({ level: opts.logLevel });
  const store = new SqliteStore(join(opts.stateDir, 'tsnet.db'));
  const host = await NetlinkHandle.open();
  const firewall = new IptablesFirewall();
  const ipam = new Ipam(store, { hostNetworks: () => hostNetworks(host), log: (msg, f) => log.warn(f ?? {}, msg) });
  const networks = new NetworkService(store, { host, firewall, log });
  const dns = new DnsService({
    log,
    ...(opts.dnsPort !== undefined ? { port: opts.dnsPort } : {}),
    ...(opts.dnsUpstreams ? { upstreams: opts.dnsUpstreams } : {}),
    ...(opts.dnsDomain ? { domain: opts.dnsDomain } : {}),
  });
  // Records come back from the store before any resolver answers.
  await dns.restore(await networks.listNetworks(), await networks.listEndpoints());
  networks.observe(dns);
  // Networks and endpoints live on in the kernel while the daemon is down; the firewall is
  // re-rendered from the store in case it was flushed meanwhile.
  await networks.restorePortReservations();
  await networks.syncFirewall({ force: true });
  await networks.gcEndpoints();
  // Periodic pass: endpoints whose container vanished without a DeleteEndpoint, and the firewall
  // re-rendered in case something flushed it. Never inside a request handler.
  const timer = setInterval(() => {
    networks.gcEndpoints().then(() => networks.syncFirewall({ force: true })).catch((e) => log.error({ err: (e as Error).message }, 'periodic reconcile failed'));
  }, 30_000);
  timer.unref();
  const apps: FastifyInstance[] = await startPluginSockets(
    [
      { name: 'tsbridge', implements: ['NetworkDriver'] },
      { name: 'tsmacvlan', implements: ['NetworkDriver'] },
      { name: 'tsnull', implements: ['NetworkDriver'] },
      { name: 'tshost', implements: ['NetworkDriver'] },
      { name: 'tsipam', implements: ['IpamDriver'] },
    ],
    { pluginDir: opts.pluginDir, logLevel: opts.logLevel, networks, ipam },
  );
  const cniServer = await startCniServer(opts.cniSocket ?? DEFAULT_CNI_SOCKET, {
    networks, ipam, host, stateDir: opts.stateDir, log, dnsDomain: dns.domain,
  });
  const dockerNames = new DockerNames(networks, log, opts.dockerSocket);
  dockerNames.start();
  log.info({ pluginDir: opts.pluginDir, state: store.location, networks: (await networks.listNetworks()).length }, 'tsnet daemon ready');
  return {
    networks,
    ipam,
    dns,
    async stop() {
      clearInterval(timer);
      dockerNames.stop();
      // Stop accepting calls, let those in flight finish (fastify close waits), then close the store.
      await Promise.all(apps.map((a) => a.close()));
      await new Promise((r) => cniServer.close(r));
      networks.reserver.closeAll();
      await dns.close();
      await host.close();
      await store.close();
    },
  };
}
