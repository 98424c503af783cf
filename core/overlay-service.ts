// Glue between NetworkService and the cluster: follows tsoverlay networks (peer sync, DNS names
// of remote endpoints), re-publishes this host's endpoints after a restart or a lost lease, and
// removes what this host left in the cluster store for endpoints it no longer has.

import type { Logger } from '../drivers/driver.js';
import type { OverlayEndpointState } from '../drivers/overlay/index.js';
import { OverlayPeers } from '../drivers/overlay/peers.js';
import type { ClusterState } from '../drivers/overlay/cluster.js';
import type { DriverContext } from '../drivers/driver.js';
import { isOverlayNetwork, type EndpointRecord, type NetworkObserver, type NetworkRecord, type NetworkService } from './network-service.js';
import type { DnsService } from './dns-service.js';

const plain = (cidr: string): string => cidr.split('/')[0]!;

export class OverlayService implements NetworkObserver {
  readonly peers: OverlayPeers;
  /** Names last published per endpoint: only a change of names is worth a write. */
  private readonly publishedNames = new Map<string, string>();

  constructor(
    private readonly networks: NetworkService,
    private readonly cluster: ClusterState,
    ctx: DriverContext,
    dns: DnsService,
    private readonly log: Logger,
  ) {
    this.peers = new OverlayPeers(ctx, cluster, (id, remote) => dns.setRemoteEndpoints(id, remote));
  }

  /**
   * Daemon start: re-take this host's addresses, membership and endpoints from the local store
   * (the lease of the previous run may have expired), then sync every network.
   */
  async restore(): Promise<void> {
    for (const n of await this.networks.listNetworks()) {
      if (!isOverlayNetwork(n)) continue;
      try {
        await this.cluster.join(n.state.cluster);
        for (const ep of await this.networks.listEndpoints(n.id)) await this.republish(n, ep);
      } catch (e) {
        this.log.warn({ network: n.state.cluster, err: (e as Error).message }, 'could not re-register with the cluster store; will retry');
      }
      await this.peers.track(n.id, n.state);
    }
    await this.reconcileOwned();
  }

  private async republish(n: NetworkRecord, ep: EndpointRecord): Promise<void> {
    if (!isOverlayNetwork(n)) return;
    const st = ep.state as OverlayEndpointState;
    for (const a of [st.address4, st.address6]) {
      if (!a) continue;
      try {
        await this.cluster.claimAddress(n.state.cluster, plain(a), ep.id);
      } catch (e) {
        // Freed after the grace period and taken by another host meanwhile: report, do not fight.
        this.log.error({ network: n.state.cluster, endpoint: ep.id, address: a, err: (e as Error).message }, 'address of a local endpoint now belongs to someone else');
        return;
      }
    }
    this.publishedNames.set(ep.id, JSON.stringify(ep.names ?? []));
    await this.cluster.publishEndpoint(n.state.cluster, {
      id: ep.id, mac: st.mac!, names: ep.names ?? [],
      ...(st.address4 ? { ip4: plain(st.address4) } : {}), ...(st.address6 ? { ip6: plain(st.address6) } : {}),
    });
  }

  /** Releases addresses and withdraws endpoints this host holds for endpoints it no longer has. */
  async reconcileOwned(): Promise<void> {
    for (const n of await this.networks.listNetworks()) {
      if (!isOverlayNetwork(n)) continue;
      try {
        const local = new Set((await this.networks.listEndpoints(n.id)).map((e) => e.id));
        const owned = await this.cluster.owned(n.state.cluster);
        for (const a of owned.addresses) if (!local.has(a.endpoint)) await this.cluster.releaseAddress(n.state.cluster, a.ip, a.endpoint);
        for (const id of owned.endpoints) if (!local.has(id)) await this.cluster.withdrawEndpoint(n.state.cluster, id);
      } catch (e) {
        this.log.warn({ network: n.state.cluster, err: (e as Error).message }, 'cluster reconcile skipped');
      }
    }
  }

  /** Periodic pass: kernel entries against the store, and leftovers of this host. */
  async reconcile(): Promise<void> {
    await this.peers.syncAll();
    await this.reconcileOwned();
  }

  async networkAdded(n: NetworkRecord): Promise<void> {
    if (isOverlayNetwork(n)) await this.peers.track(n.id, n.state);
  }

  async networkRemoved(id: string): Promise<void> {
    this.peers.untrack(id);
  }

  /** Names arrive after the join (Docker events, CNI args): publish them for the other hosts' DNS. */
  endpointChanged(ep: EndpointRecord): void {
    const names = JSON.stringify(ep.names ?? []);
    if ((this.publishedNames.get(ep.id) ?? '[]') === names) return;
    void (async () => {
      // Still there? A delete may have overtaken this update.
      if (!(await this.networks.getEndpoint(ep.networkId, ep.id))) return;
      const n = await this.networks.getNetwork(ep.networkId);
      if (!n || !isOverlayNetwork(n)) return;
      await this.republish(n, ep);
    })().catch((e) => this.log.warn({ endpoint: ep.id, err: (e as Error).message }, 'could not publish endpoint names'));
  }

  endpointRemoved(_networkId: string, id: string): void {
    this.publishedNames.delete(id);
  }

  close(): void {
    this.peers.close();
  }
}
