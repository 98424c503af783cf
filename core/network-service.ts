// NetworkService: the operations both front-ends share. It persists networks and endpoints in the
// store, serialises calls per network, runs each mutation as a Tx (undo in reverse on failure) and
// renders the firewall from the recorded networks after every change.

import type { Store } from '../store/store.js';
import { NetError } from '../kernel/errors.js';
import { overlaps, parseSubnet } from '../ipam/subnet.js';
import { Tx, KeyedMutex } from './tx.js';
import { CoalescingRunner } from './coalescing-runner.js';
import type { DriverContext, DriverName, EndpointSpec, JoinPlan, NetworkDriver, NetworkSpec } from '../drivers/driver.js';
import { bridgeDriver, bridgeFirewallView, type BridgeEndpointState, type BridgeNetworkState } from '../drivers/bridge/index.js';
import { plainDriver, type PlainEndpointState, type PlainNetworkState } from '../drivers/plain/index.js';
import { macvlanDriver, type MacvlanEndpointState, type MacvlanNetworkState } from '../drivers/macvlan/index.js';
import { overlayHandle } from '../drivers/overlay/netns.js';
import { overlayDriver, overlayFirewallView, VXLAN_PORT, type OverlayEndpointState, type OverlayNetworkState } from '../drivers/overlay/index.js';
import { PortReserver, isLoopback6, natForwarded, relayable, type PortBindingRequest, type PublishedPort } from '../drivers/shared/ports.js';
import { flushConntrack } from '../kernel/firewall/conntrack.js';
import type { FirewallExtras, FirewallNetwork } from '../kernel/firewall/iptables.js';

interface RecordBase {
  id: string;
  spec: NetworkSpec;
  createdAt: string;
  /** Docker has this network: its list held it, or its create event named it (cnm/docker-sync.ts: only such are Docker's to forget). */
  seenByDocker?: boolean;
}

export type NetworkRecord =
  | (RecordBase & { driver: 'tsbridge'; state: BridgeNetworkState })
  | (RecordBase & { driver: 'tsoverlay'; state: OverlayNetworkState })
  | (RecordBase & { driver: 'tsmacvlan'; state: MacvlanNetworkState })
  | (RecordBase & { driver: 'tsnull' | 'tshost'; state: PlainNetworkState });

export type BridgeNetworkRecord = Extract<NetworkRecord, { driver: 'tsbridge' }>;

export type OverlayNetworkRecord = Extract<NetworkRecord, { driver: 'tsoverlay' }>;

export const isBridgeNetwork = (n: NetworkRecord): n is BridgeNetworkRecord => n.driver === 'tsbridge';
export const isOverlayNetwork = (n: NetworkRecord): n is OverlayNetworkRecord => n.driver === 'tsoverlay';

/** Networks with a bridge of ours holding a gateway: they publish ports, NAT and serve DNS. */
export const hasGatewayBridge = (n: NetworkRecord): n is BridgeNetworkRecord | OverlayNetworkRecord => isBridgeNetwork(n) || isOverlayNetwork(n);

/** Every link name the records account for: gateway bridges and both ends of endpoints' veths. */
export function recordedLinkNames(nets: readonly NetworkRecord[], eps: readonly EndpointRecord[]): Set<string> {
  return new Set<string>([
    ...nets.flatMap((n) => (hasGatewayBridge(n) ? [n.state.bridge] : [])),
    ...eps.flatMap((e) => ('hostIf' in e.state ? [e.state.hostIf, e.state.containerIf] : [])),
  ]);
}

/** The bridge state of an endpoint of a tsbridge network (CNI and port publishing use only those). */
export function bridgeEndpoint(ep: EndpointRecord): BridgeEndpointState {
  if (!('hostIf' in ep.state)) throw new NetError('INVALID_ARGUMENT', `endpoint ${ep.id.slice(0, 12)} is not on a tsbridge network`);
  return ep.state;
}

type NetStateOf<D extends DriverName> = D extends 'tsbridge' ? BridgeNetworkState : D extends 'tsoverlay' ? OverlayNetworkState : D extends 'tsmacvlan' ? MacvlanNetworkState : PlainNetworkState;
type EndpointStateOf<D extends DriverName> = D extends 'tsbridge' ? BridgeEndpointState : D extends 'tsoverlay' ? OverlayEndpointState : D extends 'tsmacvlan' ? MacvlanEndpointState : PlainEndpointState;

/** Every driver, by name: the one place a driver name becomes code. */
const DRIVERS: { [D in DriverName]: NetworkDriver<NetStateOf<D>, EndpointStateOf<D>> } = {
  tsbridge: bridgeDriver,
  tsoverlay: overlayDriver,
  tsmacvlan: macvlanDriver,
  tsnull: plainDriver('tsnull'),
  tshost: plainDriver('tshost'),
};

/**
 * The driver of a network record, over the record's own states. A record's state and its
 * endpoints' states were made by that same driver; TypeScript cannot follow that correlation
 * through the union, hence the one cast.
 */
function driverOf(n: NetworkRecord): NetworkDriver<NetworkRecord['state'], EndpointRecord['state']> {
  return DRIVERS[n.driver] as unknown as NetworkDriver<NetworkRecord['state'], EndpointRecord['state']>;
}

/** How an error names another network: its CNI name, or its id (and bridge) as Docker shows them. */
function networkLabel(n: NetworkRecord): string {
  if (n.id.startsWith('cni-')) return `${JSON.stringify(n.id.slice(4))} (CNI)`;
  const bridge = (n.state as { bridge?: string }).bridge;
  return `${n.id.slice(0, 12)}${bridge ? ` (${bridge})` : ''}`;
}

/** Told about changes after they are committed (the DNS resolver follows networks this way). */
export interface NetworkObserver {
  networkAdded(n: NetworkRecord): Promise<void>;
  networkRemoved(id: string): Promise<void>;
  endpointChanged(ep: EndpointRecord): void;
  endpointRemoved(networkId: string, id: string): void;
}

export interface EndpointRecord {
  id: string;
  networkId: string;
  spec: EndpointSpec;
  state: BridgeEndpointState | OverlayEndpointState | MacvlanEndpointState | PlainEndpointState;
  sandboxKey?: string;
  joined: boolean;
  /** Published ports, programmed by programExternal and removed by revokeExternal. */
  ports?: PublishedPort[];
  /** DNS names (container name, aliases…), learnt from the runtime after the join. */
  names?: string[];
}

/** What one firewall run does; runs folded together do what any of them asked. */
interface FirewallRun {
  render: boolean;
  force: boolean;
  repairDrift: boolean;
}

const K = {
  net: (id: string) => `net/${id}`,
  nets: 'net/',
  ep: (net: string, ep: string) => `ep/${net}/${ep}`,
  eps: (net: string) => `ep/${net}/`,
};

export class NetworkService {
  private readonly mutex = new KeyedMutex();
  /** Host ports are global: published-port changes are serialised across networks too. */
  private readonly portsMutex = new KeyedMutex();
  /**
   * Network creations, one at a time: the overlap check reads the networks already committed, so
   * two overlapping creations side by side would each pass it (4 runs in 5 did, through dockerd).
   */
  private readonly creations = new KeyedMutex();
  readonly reserver: PortReserver;
  private readonly observers: NetworkObserver[] = [];
  /**
   * Every firewall render and drift check, one at a time. Each reads the store when it starts, so
   * two run side by side (networks created concurrently, a port published during a network
   * create, the reconciler's check) could land in either order and the later-landing one, read
   * earlier, would take the other's rules away until the next drift check.
   */
  private readonly firewallRuns = new CoalescingRunner<FirewallRun, string[]>(
    (o) => this.firewallRun(o),
    (a, b) => ({ render: a.render || b.render, force: a.force || b.force, repairDrift: a.repairDrift || b.repairDrift }),
  );

  constructor(
    private readonly store: Store,
    private readonly ctx: DriverContext,
    /**
     * resolverPort: the port of the per-network DNS listeners, when this process runs them.
     * userlandProxy: relay what NAT cannot publish (IPv6 loopback, IPv6 in front of an IPv4-only
     * container), as dockerd's userland-proxy; only a process that outlives the call can.
     */
    private readonly opts: { resolverPort?: number; userlandProxy?: boolean } = {},
  ) {
    this.reserver = new PortReserver(opts.userlandProxy ?? false);
  }

  /** Whether a mutation is queued or running (the reconciler leaves leak removal for later then). */
  get mutating(): boolean {
    return this.mutex.busy || this.portsMutex.busy;
  }

  /** Runs fn holding the network's lock, as a mutation does (repairs must not race one). */
  exclusive<T>(networkId: string, fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(networkId, fn);
  }

  observe(o: NetworkObserver): void {
    this.observers.push(o);
  }

  /** Observers never fail a mutation that already happened: their errors are logged. */
  private async notify(fn: (o: NetworkObserver) => Promise<void> | void): Promise<void> {
    for (const o of this.observers) {
      try {
        await fn(o);
      } catch (e) {
        this.ctx.log.warn({ err: (e as Error).message }, 'observer failed');
      }
    }
  }

  /** Sets an endpoint's DNS names (from the Docker API, or CNI args); unknown endpoints are ignored. */
  setEndpointNames(networkId: string, id: string, names: string[]): Promise<void> {
    return this.mutex.run(networkId, async () => {
      const ep = await this.getEndpoint(networkId, id);
      if (!ep) return;
      // Order matters: the first name is what PTR answers (the container name, not an alias).
      const unique = [...new Set(names)];
      if (JSON.stringify(unique) === JSON.stringify(ep.names ?? [])) return;
      const next = { ...ep, names: unique };
      await this.store.transact((t) => t.put(K.ep(networkId, id), next));
      await this.notify((o) => o.endpointChanged(next));
    });
  }

  private logUndo = (msg: string, fields: Record<string, unknown>): void => this.ctx.log.warn(fields, msg);

  /** The firewall's desired state, from the store. */
  private async firewallWanted(): Promise<{ nets: FirewallNetwork[]; extras: FirewallExtras }> {
    const nets = await this.listNetworks();
    const eps = await this.listEndpoints();
    return {
      nets: nets.filter(hasGatewayBridge).map((n) => {
        const ports = eps.filter((e) => e.networkId === n.id).flatMap((e) => (e.ports ?? []).filter(natForwarded));
        return isBridgeNetwork(n) ? bridgeFirewallView(n.state, ports) : overlayFirewallView(n.state, ports);
      }),
      extras: {
        ...(this.ctx.cluster && nets.some(isOverlayNetwork) ? { untrackVxlan: { vtep: this.ctx.cluster.vtep, port: VXLAN_PORT } } : {}),
        ...(this.opts.resolverPort ? { resolverPort: this.opts.resolverPort } : {}),
      },
    };
  }

  /** What differs between the kernel's rules and the store's (empty when nothing). */
  async firewallDrift(): Promise<string[]> {
    const w = await this.firewallWanted();
    return this.ctx.firewall.drift(w.nets, w.extras);
  }

  /** Re-renders the firewall from the store (start-up, and after every network change). */
  async syncFirewall(opts: { force?: boolean } = {}): Promise<void> {
    await this.firewallRuns.run({ render: true, force: opts.force ?? false, repairDrift: false });
  }

  /**
   * Compares the kernel's rules with the store's and re-renders everything when they differ, in
   * turn with the renders of mutations (so a render in flight is never taken for drift); returns
   * what differed.
   */
  repairFirewallDrift(): Promise<string[]> {
    return this.firewallRuns.run({ render: false, force: false, repairDrift: true });
  }

  private async firewallRun(o: FirewallRun): Promise<string[]> {
    const w = await this.firewallWanted();
    if (o.render) await this.ctx.firewall.apply(w.nets, { force: o.force, extras: w.extras });
    if (!o.repairDrift) return [];
    const drift = await this.ctx.firewall.drift(w.nets, w.extras);
    if (drift.length) await this.ctx.firewall.apply(w.nets, { force: true, extras: w.extras });
    return drift;
  }

  /** Re-takes the host-port reservations recorded in the store (daemon start). */
  async restorePortReservations(): Promise<void> {
    for (const ep of await this.listEndpoints()) {
      for (const p of ep.ports ?? []) {
        await this.reserver.reserve(p).catch((e) =>
          this.ctx.log.warn({ endpoint: ep.id, port: p, err: (e as Error).message }, 'could not re-reserve a published host port'),
        );
      }
    }
  }

  /**
   * Publishes ports for an endpoint (Docker's ProgramExternalConnectivity, CNI portMappings).
   * All or nothing: a port that cannot be had undoes the ones taken before it.
   */
  programExternal(
    networkId: string, id: string, requests: PortBindingRequest[],
    /**
     * relayIpv6ToIpv4: a binding with no address is also published on [::] in front of an
     * IPv4-only container, through the relay (Docker's userland-proxy does this; CNI's portmap
     * publishes a pod's own families only).
     * ignoreUnpublishable: a network that cannot publish ports (tsmacvlan, tsnull, tshost) takes
     * the request and publishes nothing, as Docker's macvlan, ipvlan and null drivers do, so a
     * compose file with `ports:` starts as it does on them; otherwise it is an error.
     */
    opts: { relayIpv6ToIpv4?: boolean; ignoreUnpublishable?: boolean } = {},
  ): Promise<PublishedPort[]> {
    return this.portsMutex.run('ports', () => this.mutex.run(networkId, () =>
      Tx.run(this.logUndo, async (tx) => {
        const n = await this.requireNetwork(networkId);
        const ep = await this.getEndpoint(networkId, id);
        if (!ep) throw new NetError('NOT_FOUND', `endpoint ${id.slice(0, 12)} is not known to tsnet`);
        if (ep.ports?.length) return ep.ports; // Docker sends Program again when the gateway endpoint changes back
        if (!requests.length) return []; // nothing to publish: no store write, no firewall render
        if (!hasGatewayBridge(n)) {
          if (!opts.ignoreUnpublishable) throw new NetError('UNSUPPORTED_OPTION', `${n.driver} networks cannot publish ports`);
          this.ctx.log.warn({ network: networkId, endpoint: id, ports: requests.length }, `${n.driver} networks cannot publish ports: the container is reached at its own address; nothing published`);
          return [];
        }
        const bindIpv4 = isBridgeNetwork(n) ? n.state.opts.hostBindingIpv4 : undefined;
        const published: PublishedPort[] = [];
        const c4 = ep.spec.address4?.split('/')[0];
        const c6 = ep.spec.address6?.split('/')[0];
        for (const r of requests) {
          const hostIps = r.hostIp ? [r.hostIp] : [bindIpv4 ?? '0.0.0.0', ...(bindIpv4 ? [] : ['::'])];
          const relay = this.reserver.relay && relayable(r.proto);
          let chosen: number | undefined;
          for (const hostIp of hostIps) {
            const family = hostIp.includes(':') ? 6 : 4;
            // An IPv6 host side in front of an IPv4-only container: only the relay crosses families.
            const crossFamily = family === 6 && !c6 && relay && (r.hostIp !== undefined || opts.relayIpv6ToIpv4 === true);
            const containerIp = family === 4 ? c4 : (c6 ?? (crossFamily ? c4 : undefined));
            if (!containerIp) {
              if (r.hostIp) throw new NetError('INVALID_ARGUMENT', `cannot publish on ${hostIp}: the container has no IPv${family} address on this network`);
              continue;
            }
            // Without the relay nothing can reach a container through [::1] (the kernel does not
            // NAT IPv6 loopback off the host), so say so rather than map nothing.
            if (isLoopback6(hostIp) && !relay) {
              throw new NetError('INVALID_ARGUMENT', `cannot publish on ${hostIp}: IPv6 loopback cannot be forwarded to a container without the userland proxy (TCP and UDP only); publish on 127.0.0.1 (or on :: for every IPv6 address)`);
            }
            const target = { proto: r.proto, family, hostIp, containerIp, containerPort: r.containerPort } as const;
            let hostPort: number;
            try {
              if (chosen !== undefined) {
                // The IPv6 twin of a mapping uses the same host port as its IPv4 one.
                await this.reserver.reserve({ ...target, hostPort: chosen, hostPortEnd: chosen });
                hostPort = chosen;
              } else if (r.hostPort === 0) {
                hostPort = await this.reserver.choose(target);
              } else if (r.hostPortEnd > r.hostPort) {
                hostPort = await this.reserver.choose(target, r.hostPort, r.hostPortEnd);
              } else {
                await this.reserver.reserve({ ...target, hostPort: r.hostPort, hostPortEnd: r.hostPort });
                hostPort = r.hostPort;
              }
            } catch (e) {
              // The relayed IPv6 twin nobody asked for by address is a convenience, as with
              // Docker: a host without IPv6, or a port taken on IPv6 alone, does not fail the IPv4 one.
              if (crossFamily && !r.hostIp && chosen !== undefined) {
                this.ctx.log.warn({ network: networkId, endpoint: id, port: `[::]:${chosen}/${r.proto}`, err: (e as Error).message }, 'IPv6 side of a published port not relayed');
                continue;
              }
              throw e;
            }
            chosen = hostPort;
            const p: PublishedPort = { ...target, hostPort, hostPortEnd: hostPort };
            tx.onUndo(`release ${hostIp}:${hostPort}/${r.proto}`, () => this.reserver.release(p));
            published.push(p);
          }
        }
        await this.store.transact((t) => t.put(K.ep(networkId, id), { ...ep, ports: published }));
        tx.onUndo('forget ports', () => this.store.transact((t) => t.put(K.ep(networkId, id), ep)));
        await this.syncFirewall();
        for (const p of published) {
          this.ctx.log.info({ network: networkId, endpoint: id, port: `${p.hostIp}:${p.hostPort}/${p.proto} -> ${p.containerIp}:${p.containerPort}` }, 'port published');
        }
        return published;
      })));
  }

  /** Removes exactly this endpoint's published ports; idempotent. */
  revokeExternal(networkId: string, id: string): Promise<void> {
    return this.portsMutex.run('ports', () => this.mutex.run(networkId, async () => {
      const ep = await this.getEndpoint(networkId, id);
      if (!ep?.ports?.length) return;
      await this.store.transact((t) => t.put(K.ep(networkId, id), { ...ep, ports: [] }));
      await this.syncFirewall();
      await this.releasePorts(ep.ports);
    }));
  }

  /** Frees host ports and flushes their flows: existing (UDP above all) would keep going to the old container. */
  private async releasePorts(ports: readonly PublishedPort[]): Promise<void> {
    for (const p of ports) this.reserver.release(p);
    await flushConntrack(ports).catch((e) => this.ctx.log.warn({ err: (e as Error).message }, 'conntrack flush failed'));
  }

  listNetworks(): Promise<NetworkRecord[]> {
    return this.store.read((tx) => tx.list<NetworkRecord>(K.nets).map(([, n]) => n));
  }

  getNetwork(id: string): Promise<NetworkRecord | undefined> {
    return this.store.read((tx) => tx.get<NetworkRecord>(K.net(id)));
  }

  private async requireNetwork(id: string): Promise<NetworkRecord> {
    const n = await this.getNetwork(id);
    if (!n) throw new NetError('NOT_FOUND', `network ${id.slice(0, 12)} is not known to tsnet`);
    return n;
  }

  createNetwork(spec: NetworkSpec): Promise<void> {
    return this.mutex.run(spec.id, () => this.creations.run('create', () =>
      Tx.run(this.logUndo, async (tx) => {
        if (await this.getNetwork(spec.id)) throw new NetError('ALREADY_EXISTS', `network ${spec.id.slice(0, 12)} exists`);
        // Validate everything before touching the kernel.
        const driver = spec.driver ?? 'tsbridge';
        DRIVERS[driver].parseOptions(spec.rawOptions);
        const others = await this.listNetworks();
        // No two networks of this host may overlap, whichever IPAM gave their pools (Docker's
        // bridge driver refuses the same): each bridge's on-link route claims its subnet, and
        // the host would send an overlapping part to whichever route is more specific.
        for (const mine of [...spec.ipv4, ...spec.ipv6].map((s) => s.subnet)) {
          const m = parseSubnet(mine);
          for (const o of others) {
            const clash = [...o.state.subnets4, ...o.state.subnets6].find((theirs) => overlaps(m, parseSubnet(theirs)));
            if (clash) {
              const what = clash === mine ? `is already used by` : `overlaps ${clash} of`;
              throw new NetError('POOL_OVERLAP', `subnet ${mine} ${what} tsnet network ${networkLabel(o)}`);
            }
          }
        }
        // Each driver registers the undo of what it made on tx as it goes.
        const state = await DRIVERS[driver].createNetwork(this.ctx, spec, tx, others);
        const rec = { id: spec.id, driver, spec, state, createdAt: new Date().toISOString() } as NetworkRecord;
        await this.store.transact((t) => t.put(K.net(spec.id), rec));
        tx.onUndo('forget network', () => this.store.transact((t) => t.delete(K.net(spec.id))));
        await this.syncFirewall();
        tx.onUndo('re-render firewall', () => this.syncFirewall());
        await this.notify((o) => o.networkAdded(rec));
        this.ctx.log.info({ network: spec.id, driver, ...(isBridgeNetwork(rec) ? { bridge: rec.state.bridge } : {}) }, 'network created');
      })));
  }

  /** Records that Docker's network list holds the network (once; later sightings change nothing). */
  markSeenByDocker(id: string): Promise<void> {
    return this.mutex.run(id, async () => {
      const n = await this.getNetwork(id);
      if (!n || n.seenByDocker) return;
      await this.store.transact((t) => t.put(K.net(id), { ...n, seenByDocker: true }));
    });
  }

  /** Idempotent: an unknown network is already deleted. */
  deleteNetwork(id: string): Promise<void> {
    return this.mutex.run(id, async () => {
      const n = await this.getNetwork(id);
      if (!n) return;
      const eps = await this.store.read((tx) => tx.list<EndpointRecord>(K.eps(id)));
      // Veths of removed endpoints may still be queued for deletion: none may outlive the network.
      await this.ctx.reaper?.drain();
      const d = driverOf(n);
      for (const [, ep] of eps) await d.deleteEndpoint(this.ctx, n.state, ep.id, ep.state);
      await d.deleteNetwork(this.ctx, n.state, (await this.listNetworks()).filter((o) => o.id !== id));
      await this.store.transact((tx) => {
        for (const [k] of eps) tx.delete(k);
        tx.delete(K.net(id));
      });
      await this.syncFirewall();
      // Docker deletes endpoints first; a network removed with endpoints (Docker forgot them while
      // the daemon was away) still holds their host ports.
      await this.releasePorts(eps.flatMap(([, ep]) => ep.ports ?? []));
      await this.notify((o) => o.networkRemoved(id));
      this.ctx.log.info({ network: id }, 'network deleted');
    });
  }

  createEndpoint(spec: EndpointSpec): Promise<EndpointRecord> {
    return this.mutex.run(spec.networkId, () =>
      Tx.run(this.logUndo, async (tx) => {
        const n = await this.requireNetwork(spec.networkId);
        const existing = await this.store.read((t) => t.get<EndpointRecord>(K.ep(spec.networkId, spec.id)));
        if (existing) throw new NetError('ALREADY_EXISTS', `endpoint ${spec.id.slice(0, 12)} exists`);
        const state = await driverOf(n).createEndpoint(this.ctx, n.state, spec, tx);
        // tsoverlay allocates cluster-wide when the front-end brought no address (CNI).
        const assigned = 'address4' in state || 'address6' in state ? state as OverlayEndpointState : undefined;
        const fullSpec: EndpointSpec = {
          ...spec,
          ...(assigned?.address4 && !spec.address4 ? { address4: assigned.address4 } : {}),
          ...(assigned?.address6 && !spec.address6 ? { address6: assigned.address6 } : {}),
        };
        const rec: EndpointRecord = { id: spec.id, networkId: spec.networkId, spec: fullSpec, state, joined: false };
        await this.store.transact((t) => t.put(K.ep(spec.networkId, spec.id), rec));
        this.ctx.log.info({ network: spec.networkId, endpoint: spec.id, ...('hostIf' in state ? { veth: state.hostIf } : {}) }, 'endpoint created');
        return rec;
      }),
    );
  }

  /**
   * Forgets endpoints whose host-side veth is gone: the container's namespace was destroyed
   * without Docker telling us (a dockerd crash skips Leave/DeleteEndpoint when our driver is not
   * registered yet). Returns the ids removed.
   */
  async gcEndpoints(): Promise<string[]> {
    const all = await this.store.read((tx) => tx.list<EndpointRecord>('ep/').map(([, e]) => e));
    const removed: string[] = [];
    for (const ep of all) {
      if (!('hostIf' in ep.state)) continue; // tsnull/tshost endpoints own nothing in the kernel
      const state = ep.state;
      await this.mutex.run(ep.networkId, async () => {
        const n = await this.getNetwork(ep.networkId);
        // An overlay endpoint's bridge end lives in the network's own namespace.
        const side = n && isOverlayNetwork(n) ? await overlayHandle(n.state.netns).catch(() => undefined) : this.ctx.host;
        if (!side || (await side.linkFind({ name: state.hostIf }))) return;
        if (!state.inSandbox && (await this.ctx.host.linkFind({ name: state.containerIf }))) return;
        await this.store.transact((t) => t.delete(K.ep(ep.networkId, ep.id)));
        await this.notify((o) => o.endpointRemoved(ep.networkId, ep.id));
        removed.push(ep.id);
        this.ctx.log.warn({ network: ep.networkId, endpoint: ep.id }, 'endpoint gone from the kernel without a DeleteEndpoint; forgot it');
      });
    }
    return removed;
  }

  listEndpoints(networkId?: string): Promise<EndpointRecord[]> {
    return this.store.read((tx) => tx.list<EndpointRecord>(networkId ? K.eps(networkId) : 'ep/').map(([, e]) => e));
  }

  getEndpoint(networkId: string, id: string): Promise<EndpointRecord | undefined> {
    return this.store.read((tx) => tx.get<EndpointRecord>(K.ep(networkId, id)));
  }

  join(networkId: string, id: string, sandboxKey?: string): Promise<JoinPlan> {
    return this.mutex.run(networkId, async () => {
      const n = await this.requireNetwork(networkId);
      const ep = await this.getEndpoint(networkId, id);
      if (!ep) throw new NetError('NOT_FOUND', `endpoint ${id.slice(0, 12)} is not known to tsnet`);
      const joined: EndpointRecord = { ...ep, joined: true, ...(sandboxKey ? { sandboxKey } : {}) };
      await this.store.transact((t) => t.put(K.ep(networkId, id), joined));
      await this.notify((o) => o.endpointChanged(joined));
      return driverOf(n).join(n.state, ep.state);
    });
  }

  /** Links are deleted in the background (the daemon's reaper), not before a call returns. */
  get defersLinkDeletion(): boolean {
    return this.ctx.reaper !== undefined;
  }

  leave(networkId: string, id: string): Promise<void> {
    return this.mutex.run(networkId, async () => {
      const ep = await this.getEndpoint(networkId, id);
      if (!ep) return;
      const n = await this.getNetwork(networkId);
      const driver = n ? driverOf(n) : undefined;
      if (n && driver?.leave && ep.sandboxKey && ep.joined) {
        // Best effort by contract: the front-end's own clean-up still runs if this does nothing.
        await driver.leave(this.ctx, n.state, id, ep.state, { path: ep.sandboxKey })
          .catch((e: Error) => this.ctx.log.debug({ endpoint: id.slice(0, 12), err: e.message }, 'leave: container interface left in its sandbox'));
      }
      const left = { ...ep, joined: false };
      await this.store.transact((t) => t.put(K.ep(networkId, id), left));
      await this.notify((o) => o.endpointChanged(left));
    });
  }

  /** Idempotent: a missing endpoint or veth is already deleted. */
  deleteEndpoint(networkId: string, id: string): Promise<void> {
    return this.mutex.run(networkId, async () => {
      const ep = await this.getEndpoint(networkId, id);
      if (!ep) return;
      const n = await this.getNetwork(networkId);
      // A network's record goes with its endpoints' records; an endpoint whose network is gone
      // (a store edited by hand) is only forgotten, and the reconciler removes links it left.
      if (n) await driverOf(n).deleteEndpoint(this.ctx, n.state, id, ep.state);
      await this.store.transact((t) => t.delete(K.ep(networkId, id)));
      await this.notify((o) => o.endpointRemoved(networkId, id));
      if (ep.ports?.length) {
        // Docker normally revokes first; after a crash it may not have.
        await this.syncFirewall();
        await this.releasePorts(ep.ports);
      }
      this.ctx.log.info({ network: networkId, endpoint: id }, 'endpoint deleted');
    });
  }
}
