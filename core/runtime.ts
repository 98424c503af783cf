// Wires the daemon together: store, IPAM, netlink, firewall, services, plugin sockets.

import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { pino } from 'pino';
import { startPluginSockets } from '../cnm/server.js';
import { IptablesFirewall } from '../kernel/firewall/iptables.js';
import { NetlinkHandle } from '../kernel/netlink.js';
import { Ipam } from '../ipam/ipam.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { isOverlayNetwork, NetworkService } from './network-service.js';
import { hostNetworks } from './host-networks.js';
import { DnsService } from './dns-service.js';
import { DockerNames } from '../cnm/docker-names.js';
import { DockerSync } from '../cnm/docker-sync.js';
import { DEFAULT_CNI_SOCKET, startCniServer } from '../cni/server.js';
import type { EtcdCluster } from '../store/etcd-cluster.js';
import { IPAM_OWNER } from '../store/cluster-store.js';
import { OverlayService } from './overlay-service.js';
import { ownerMac, ownerMark } from './owner.js';
import type { DriverContext, DriverName } from '../drivers/driver.js';
import { Reconciler } from './reconciler.js';
import { LinkReaper } from '../drivers/shared/reaper.js';
import { closeOverlayHandles, overlayHandle } from '../drivers/overlay/netns.js';
import { randomUUID } from 'node:crypto';
import { NetError } from '../kernel/errors.js';
import { startApiSocket, startMetricsListener } from '../api/server.js';
import { DEFAULT_API_SOCKET } from '../api/addresses.js';
import { readInventory } from './inventory.js';
import { Metrics } from './metrics.js';
import { TSNET_VERSION } from './version.js';
import { claimNamespace } from './namespace-claim.js';
import { warmUp } from '../cni/warm-up.js';

export interface DaemonOptions {
  pluginDir: string;
  /** tsnet's control API for the CLI (default /run/tsnet/api.sock, root only). */
  apiSocket?: string;
  /** Also serve /metrics on this loopback TCP address ("127.0.0.1:9323"). */
  metricsAddr?: string;
  /**
   * Run as a Docker managed plugin: one socket, tsnet.sock, serving this network driver and
   * tsipam (Docker names both after the plugin).
   */
  managedPlugin?: DriverName;
  stateDir: string;
  logLevel: string;
  /** Port of the per-network resolvers (53 unless testing). */
  dnsPort?: number;
  /** Relay published TCP and UDP ports NAT cannot serve (IPv6 loopback, IPv6 to IPv4-only containers); default on, as dockerd's. */
  userlandProxy?: boolean;
  /** Upstream resolvers; the host's resolv.conf when empty. */
  dnsUpstreams?: string[];
  dnsDomain?: string;
  dockerSocket?: string;
  /** Where installed CNI plugins reach the daemon. */
  cniSocket?: string;
  /** etcd endpoints ("host:port"): enables tsoverlay. */
  clusterStore?: string[];
  /** This host's underlay address (the VTEP); required with clusterStore. */
  advertiseAddr?: string;
  /** Seconds a silent host keeps its entries (default 10). */
  leaseTtl?: number;
  /** Seconds before a dead host's addresses are freed (default 60). */
  graceSeconds?: number;
  /** Seconds between drift-repair passes (default 2). */
  reconcileSeconds?: number;
  /** Seconds before an address Docker never used is freed (default 60). */
  orphanGraceSeconds?: number;
  /** Seconds between sweeps for networks and endpoints Docker forgot (default 30). */
  dockerSyncSeconds?: number;
  /** Rehearse one attach in namespaces of its own before answering (cni/warm-up.ts); default on. */
  warmUp?: boolean;
}

export interface Daemon {
  networks: NetworkService;
  reconciler: Reconciler;
  ipam: Ipam;
  dns: DnsService;
  cluster?: EtcdCluster;
  overlay?: OverlayService;
  stop(): Promise<void>;
}

/**
 * Starts the daemon once this network namespace is claimed for it (core/namespace-claim.ts): a
 * second daemon here is refused before it touches the store or the kernel.
 */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const claim = await claimNamespace(opts.stateDir);
  let daemon: Daemon;
  try {
    daemon = await startServices(opts);
  } catch (e) {
    await claim.release();
    throw e;
  }
  return {
    ...daemon,
    async stop() {
      await daemon.stop();
      await claim.release();
    },
  };
}

async function startServices(opts: DaemonOptions): Promise<Daemon> {
  const log = pino({ level: opts.logLevel });
  const store = new SqliteStore(join(opts.stateDir, 'tsnet.db'));
  const host = await NetlinkHandle.open();
  const firewall = new IptablesFirewall();
  const ipam = new Ipam(store, { hostNetworks: () => hostNetworks(host), log: (msg, f) => log.warn(f ?? {}, msg) });
  let cluster: EtcdCluster | undefined;
  if (opts.clusterStore?.length) {
    if (!opts.advertiseAddr) throw new NetError('INVALID_ARGUMENT', '--cluster-store needs --advertise-addr IP (this host\'s underlay address, used as its VTEP)');
    if (!(await host.addrList()).some((a) => a.ip === opts.advertiseAddr)) {
      throw new NetError('INVALID_ARGUMENT', `--advertise-addr ${opts.advertiseAddr} is not an address of this host`);
    }
    // The host id outlives restarts (kept in the local store), so a returning host is recognised.
    const hostId = await store.transact((t) => {
      const have = t.get<string>('cluster/host-id');
      if (have) return have;
      const id = randomUUID();
      t.put('cluster/host-id', id);
      return id;
    });
    // Loaded only here: the etcd client (gRPC, protobuf) costs ~120 ms and ~30 MB of RSS.
    const { EtcdCluster } = await import('../store/etcd-cluster.js');
    cluster = new EtcdCluster({
      endpoints: opts.clusterStore, hostId, vtep: opts.advertiseAddr, log,
      ...(opts.leaseTtl ? { leaseTtl: opts.leaseTtl } : {}),
      ...(opts.graceSeconds !== undefined ? { graceSeconds: opts.graceSeconds } : {}),
    });
    // Start even if etcd is away: local networks work, and registration is retried.
    await cluster.start().catch((e) => {
      log.warn({ err: (e as Error).message }, 'cluster store unreachable at start; will keep trying');
      void cluster!.republish();
    });
  }
  const owner = await ownerMark(store);
  const reaper = new LinkReaper(log);
  // One driver context for every service of the daemon.
  const ctx: DriverContext = { host, firewall, log, owner, ownedMac: (stableFor?: string) => ownerMac(owner, stableFor), reaper, ...(cluster ? { cluster } : {}) };
  const networks = new NetworkService(store, ctx, { resolverPort: opts.dnsPort ?? 53, userlandProxy: opts.userlandProxy ?? true });
  // Sources are read at scrape time; the services they name are all made below.
  let reconcilerRef: Reconciler | undefined;
  let dnsRef: DnsService | undefined;
  const metrics = new Metrics({
    inventory: () => readInventory(store),
    dnsStats: () => {
      const f = dnsRef?.forwarder;
      const st = dnsRef?.server.stats;
      return {
        cacheHits: f?.cacheHits ?? 0, cacheMisses: f?.cacheMisses ?? 0, upstreamFailures: f?.upstreamFailures ?? 0, cacheSize: f?.cache.size ?? 0,
        native: { answered: st?.fromTable ?? 0, dropped: st?.droppedNatively ?? 0 },
      };
    },
    repairs: () => reconcilerRef?.counts ?? new Map(),
    // Endpoints' bridge ends: in the host namespace (tsbridge) or in their overlay network's own
    // namespace (tsoverlay); their names (tsv<endpoint id>) are unique across both.
    links: async () => {
      const overlays = (await networks.listNetworks()).filter(isOverlayNetwork);
      const inOverlays = await Promise.all(overlays.map((n) => overlayHandle(n.state.netns).then((h) => h.linkList()).catch(() => [])));
      return [...(await host.linkList()), ...inOverlays.flat()];
    },
  });
  const dns = new DnsService({
    log,
    observe: (seconds, outcome) => metrics.dns(seconds, outcome),
    ...(opts.dnsPort !== undefined ? { port: opts.dnsPort } : {}),
    ...(opts.dnsUpstreams ? { upstreams: opts.dnsUpstreams } : {}),
    ...(opts.dnsDomain ? { domain: opts.dnsDomain } : {}),
  });
  // Records come back from the store before any resolver answers.
  await dns.restore(await networks.listNetworks(), await networks.listEndpoints());
  networks.observe(dns);
  let overlay: OverlayService | undefined;
  if (cluster) {
    overlay = new OverlayService(networks, cluster, ctx, dns, log, opts.orphanGraceSeconds !== undefined ? opts.orphanGraceSeconds * 1000 : undefined);
    await overlay.restore();
    const c = cluster;
    // Docker with --ipam-driver tsipam: endpoint addresses of a tsoverlay subnet are taken in the
    // cluster store, so two hosts never hand out the same one.
    ipam.setDelegates(async (subnet) => {
      const n = (await networks.listNetworks()).find((x) => isOverlayNetwork(x) && x.state.subnets4.concat(x.state.subnets6).includes(subnet));
      if (!n || !isOverlayNetwork(n)) return undefined;
      const name = n.state.cluster;
      return {
        allocate: async (address) => {
          if (!address) return c.allocateAddress(name, subnet, IPAM_OWNER);
          const ip = address.split('/')[0]!;
          await c.claimAddress(name, ip, IPAM_OWNER);
          return `${ip}/${subnet.split('/')[1]}`;
        },
        release: (ip) => c.releaseAddress(name, ip, IPAM_OWNER),
      };
    });
    networks.observe(overlay);
  }
  // Networks and endpoints live on in the kernel while the daemon is down; the firewall is
  // re-rendered from the store in case it was flushed meanwhile.
  await networks.restorePortReservations();
  await networks.syncFirewall({ force: true });
  await networks.gcEndpoints();
  // Periodic passes, never inside a request handler: drift repair every couple of seconds (a
  // flushed iptables is back within that), and endpoints whose container vanished without a
  // DeleteEndpoint every 30 s.
  const reconciler = new Reconciler(networks, ctx, log, {
    ipam, ...(opts.orphanGraceSeconds !== undefined ? { orphanGraceMs: opts.orphanGraceSeconds * 1000 } : {}),
  });
  reconcilerRef = reconciler;
  dnsRef = dns;
  await reconciler.pass().catch((e) => log.error({ err: (e as Error).message }, 'start-up reconcile failed'));
  try {
    reconciler.watch();
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'no netlink events; drift is repaired by the periodic pass only');
  }
  const repairTimer = setInterval(() => {
    reconciler.pass().catch((e) => log.error({ err: (e as Error).message }, 'reconcile pass failed'));
  }, (opts.reconcileSeconds ?? 2) * 1000);
  repairTimer.unref();
  const timer = setInterval(() => {
    networks.gcEndpoints().catch((e) => log.error({ err: (e as Error).message }, 'endpoint gc failed'));
  }, 30_000);
  timer.unref();
  // Overlay: entries against the store, leftovers, and the addresses of hosts dead past the grace.
  const clusterTimer = setInterval(() => {
    if (!overlay || !cluster) return;
    overlay.reconcile().then(() => cluster!.sweepDeadHosts()).catch((e) => log.warn({ err: (e as Error).message }, 'cluster reconcile failed'));
  }, Math.min(30, opts.leaseTtl ?? 10) * 1000);
  clusterTimer.unref();
  // Before the sockets open, so the first container after a start does not pay for V8's first
  // compile of the attach path; a rehearsal that fails costs nothing else.
  if (opts.warmUp !== false) {
    await warmUp(opts.stateDir).then(
      (r) => log.debug({ ms: Math.round(r.ms), renders: r.renders, events: r.events }, 'warmed up'),
      (e) => log.warn({ err: (e as Error).message }, 'warm-up rehearsal failed; the first attach will be slower'),
    );
  }
  const apps: FastifyInstance[] = await startPluginSockets(
    opts.managedPlugin ? [{ name: 'tsnet', driver: opts.managedPlugin, implements: ['NetworkDriver', 'IpamDriver'] }] : [
      { name: 'tsbridge', implements: ['NetworkDriver'] },
      { name: 'tsoverlay', implements: ['NetworkDriver'] },
      { name: 'tsmacvlan', implements: ['NetworkDriver'] },
      { name: 'tsnull', implements: ['NetworkDriver'] },
      { name: 'tshost', implements: ['NetworkDriver'] },
      { name: 'tsipam', implements: ['IpamDriver'] },
    ],
    { pluginDir: opts.pluginDir, logLevel: opts.logLevel, networks, ipam, observer: metrics },
  );
  const cniServer = await startCniServer(opts.cniSocket ?? DEFAULT_CNI_SOCKET, {
    networks, ipam, host, stateDir: opts.stateDir, log, dnsDomain: dns.domain,
  }, metrics);
  const api = await startApiSocket(opts.apiSocket ?? DEFAULT_API_SOCKET, {
    store, networks, ipam, reconciler, records: dns.records, metrics, version: TSNET_VERSION, startedAt: Date.now(),
  });
  const metricsListener = opts.metricsAddr ? await startMetricsListener(opts.metricsAddr, metrics) : undefined;
  const dockerNames = new DockerNames(networks, log, opts.dockerSocket);
  dockerNames.start();
  // Something removed from Docker while the daemon was away (cnm/docker-sync.ts) goes after the
  // second sweep that misses it.
  const dockerSync = new DockerSync(networks, ipam, log, opts.dockerSocket);
  const sweepDocker = (): void => {
    dockerSync.sweep().catch((e) => log.warn({ err: (e as Error).message }, 'docker sweep failed'));
  };
  const dockerSyncTimer = setInterval(sweepDocker, (opts.dockerSyncSeconds ?? 30) * 1000);
  dockerSyncTimer.unref();
  sweepDocker();
  log.info({ pluginDir: opts.pluginDir, state: store.location, networks: (await networks.listNetworks()).length }, 'tsnet daemon ready');
  return {
    networks,
    reconciler,
    ipam,
    dns,
    ...(cluster ? { cluster } : {}),
    ...(overlay ? { overlay } : {}),
    async stop() {
      clearInterval(timer);
      clearInterval(repairTimer);
      clearInterval(clusterTimer);
      clearInterval(dockerSyncTimer);
      reconciler.close();
      dockerNames.stop();
      // Stop accepting calls, let those in flight finish (fastify close waits), then close the store.
      await Promise.all([...apps, api, ...(metricsListener ? [metricsListener] : [])].map((a) => a.close()));
      await new Promise((r) => cniServer.close(r));
      networks.reserver.closeAll();
      await reaper.drain();
      await dns.close();
      overlay?.close();
      await closeOverlayHandles();
      await cluster?.close();
      await host.close();
      await store.close();
    },
  };
}
