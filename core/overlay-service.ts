// Glue between NetworkService and the cluster: follows tsoverlay networks (peer sync, DNS names
// of remote endpoints), re-publishes this host's endpoints after a restart or a lost lease, and
// removes what this host left in the cluster store for endpoints it no longer has.

import type { Logger } from '../drivers/driver.js';
import type { OverlayEndpointState } from '../drivers/overlay/index.js';
import { OverlayPeers } from '../drivers/overlay/peers.js';
import type { ClusterState } from '../drivers/overlay/cluster.js';
import type { DriverContext } from '../drivers/driver.js';
import { isOverlayNetwork, type EndpointRecord, type NetworkObserver, type NetworkRecord, type NetworkService, type OverlayNetworkRecord } from './network-service.js';
import type { DnsService } from './dns-service.js';

const plain = (cidr: string): string => cidr.split('/')[0]!;

type Leftover =
  | { kind: 'address'; key: string; ip: string; endpoint: string }
  | { kind: 'endpoint'; key: string; endpoint: string };

export class OverlayService implements NetworkObserver {
  readonly peers: OverlayPeers;
  /** Names last published per endpoint: only a change of names is worth a write. */
  private readonly publishedNames = new Map<string, string>();

  /** When each leftover (see reconcileOwned) was first seen, by its key. */
  private readonly leftoverSince = new Map<string, number>();

  constructor(
    private readonly networks: NetworkService,
    private readonly cluster: ClusterState,
    ctx: DriverContext,
    dns: DnsService,
    private readonly log: Logger,
    /** How long a leftover must stay one before it goes (the daemon's --orphan-grace). */
    private readonly leftoverGraceMs = 60_000,
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

  /** What this host holds in the cluster store for `n` with no local endpoint to show for it. */
  private async leftovers(n: OverlayNetworkRecord): Promise<Leftover[]> {
    const local = new Set((await this.networks.listEndpoints(n.id)).map((e) => e.id));
    const owned = await this.cluster.owned(n.state.cluster);
    return [
      ...owned.addresses.filter((a) => !local.has(a.endpoint)).map((a) => ({ kind: 'address' as const, key: `${n.id} address ${a.ip} ${a.endpoint}`, ip: a.ip, endpoint: a.endpoint })),
      ...owned.endpoints.filter((id) => !local.has(id)).map((id) => ({ kind: 'endpoint' as const, key: `${n.id} endpoint ${id}`, endpoint: id })),
    ];
  }

  /**
   * Releases addresses and withdraws endpoints this host holds for endpoints it no longer has
   * (a daemon that died between publishing and committing, say). Two things look like leftovers
   * for a while and are not: an endpoint being created is published before it is committed, and
   * an address tsipam gave Docker waits for its CreateEndpoint. So a leftover goes only after it
   * has been one for the grace period, and only after looking again under the network's lock,
   * which a creation holds from its publish to its commit. (Acting at once withdrew endpoints
   * being attached, leaving them unreachable from other hosts, and freed their addresses for
   * reuse.)
   */
  async reconcileOwned(now = Date.now()): Promise<void> {
    const seen = new Set<string>();
    for (const n of await this.networks.listNetworks()) {
      if (!isOverlayNetwork(n)) continue;
      try {
        const found = await this.leftovers(n);
        for (const l of found) {
          seen.add(l.key);
          if (!this.leftoverSince.has(l.key)) this.leftoverSince.set(l.key, now);
        }
        const due = found.filter((l) => now - this.leftoverSince.get(l.key)! >= this.leftoverGraceMs);
        if (!due.length) continue;
        await this.networks.exclusive(n.id, async () => {
          const still = new Set((await this.leftovers(n)).map((l) => l.key));
          for (const l of due) {
            if (!still.has(l.key)) continue;
            if (l.kind === 'address') await this.cluster.releaseAddress(n.state.cluster, l.ip, l.endpoint);
            else await this.cluster.withdrawEndpoint(n.state.cluster, l.endpoint);
            this.leftoverSince.delete(l.key);
            this.log.info({ network: n.state.cluster, ...(l.kind === 'address' ? { address: l.ip } : {}), endpoint: l.endpoint }, `cluster leftover ${l.kind} removed`);
          }
        });
      } catch (e) {
        this.log.warn({ network: n.state.cluster, err: (e as Error).message }, 'cluster reconcile skipped');
        for (const k of this.leftoverSince.keys()) if (k.startsWith(`${n.id} `)) seen.add(k); // unknown: keep their age
      }
    }
    for (const k of [...this.leftoverSince.keys()]) if (!seen.has(k)) this.leftoverSince.delete(k);
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
