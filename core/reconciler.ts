// Drift repair: compares what the store says with what the kernel has and puts the kernel back.
// Runs once at start, whenever the kernel announces a change to an object we watch (link and
// address events: a pass starts ~50 ms later), and every few seconds for what sends no event
// (iptables; cheap when nothing drifted: a link dump, an address dump and one iptables-save per
// family).
//
//   - a tsbridge/tsoverlay gateway interface deleted or down, or its gateway address removed
//   - an endpoint's veth detached from its bridge
//   - tsnet's iptables chains flushed or their jumps removed (a firewalld-style reload)
//   - forwarding sysctls turned off, route_localnet reset on a tsbridge bridge
//   - links this store made (alias "tsnet:<id>") that no record names: removed, once seen twice
//     and only while no mutation runs (a create in flight has kernel objects before its record)
// What cannot be rebuilt (an overlay network's namespace deleted, taking the containers'
// interfaces with it) is reported, not dropped.

import type { DriverContext, Logger } from '../drivers/driver.js';
import type { OverlayEndpointState } from '../drivers/overlay/index.js';
import { makeBridge } from '../drivers/bridge/index.js';
import { OVERLAY_BRIDGE, makeGateway } from '../drivers/overlay/index.js';
import { overlayHandle } from '../drivers/overlay/netns.js';
import { netnsByName, netnsExists } from '../kernel/netns.js';
import { ifaceSysctl, sysctlGet, sysctlSet, type SysctlKey } from '../kernel/sysctl.js';
import { NetlinkEvents, type NetlinkEvent } from '../kernel/netlink-events.js';
import { REAP_GROUP } from '../drivers/shared/reaper.js';
import type { Address, Link } from '../kernel/types.js';
import { linkOwnedBy } from './owner.js';
import type { Ipam } from '../ipam/ipam.js';
import { hasGatewayBridge, isBridgeNetwork, isOverlayNetwork, recordedLinkNames, type BridgeNetworkRecord, type EndpointRecord, type NetworkRecord, type NetworkService } from './network-service.js';

export interface Repair {
  what: string;
  network?: string;
  object: string;
}

export class Reconciler {
  /** Repairs made since start, by kind (for logs now, metrics later). */
  readonly counts = new Map<string, number>();
  private leakSuspects = new Set<string>();
  private reported = new Set<string>();
  private running: Promise<Repair[]> | undefined;
  /** Names whose change means drift: gateway interfaces (bridges) and endpoints' bridge ends. */
  private watchedGateways = new Set<string>();
  private watchedPorts = new Set<string>();
  private gatewayIndexes = new Set<number>();
  private events: NetlinkEvents | undefined;
  private kickTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly networks: NetworkService,
    private readonly ctx: DriverContext,
    private readonly log: Logger,
    private readonly opts: { ipam?: Ipam; orphanGraceMs?: number } = {},
  ) {}

  /** One pass; concurrent callers share it. */
  pass(): Promise<Repair[]> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Listens to the host namespace's link and address events; a relevant one starts a pass. */
  watch(): void {
    this.events ??= NetlinkEvents.open(this.ctx.host.netns, (e) => {
      if (!this.relevant(e)) return;
      this.log.debug({ event: e.type, ...('link' in e ? { link: e.link.name } : 'addr' in e ? { addr: e.addr.cidr, index: e.addr.index } : {}) }, 'kernel event: drift check');
      this.kick();
    });
  }

  close(): void {
    clearTimeout(this.kickTimer);
    this.events?.close();
    this.events = undefined;
  }

  private relevant(e: NetlinkEvent): boolean {
    switch (e.type) {
      case 'overrun':
        return true;
      case 'link-del':
        return !e.bridgePort && this.watchedGateways.has(e.link.name);
      case 'link-new':
        if (e.bridgePort) return false;
        if (this.watchedGateways.has(e.link.name)) {
          this.gatewayIndexes.add(e.link.index); // a recreated gateway has a new index
          return !e.link.up;
        }
        // A port pulled out of its bridge; not one we retired ourselves (the reap group).
        return this.watchedPorts.has(e.link.name) && e.link.master === undefined && e.link.group !== REAP_GROUP;
      case 'addr-del':
        return this.gatewayIndexes.has(e.addr.index);
      default:
        return false;
    }
  }

  /** A pass soon: events come in bursts, and one pass answers a burst. */
  private kick(): void {
    if (this.kickTimer) return;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = undefined;
      // A pass already running may have read the kernel before this change: follow it with one.
      void (this.running ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => this.pass())
        .catch((err) => this.log.error({ err: (err as Error).message }, 'reconcile pass failed'));
    }, 50);
    this.kickTimer.unref();
  }

  private async run(): Promise<Repair[]> {
    const repairs: Repair[] = [];
    const links = await this.ctx.host.linkList();
    const addrs = await this.ctx.host.addrList();
    const nets = await this.networks.listNetworks();
    // One read of every endpoint serves the watch lists and the lock-free checks below.
    const eps = await this.networks.listEndpoints();
    this.watchedGateways = new Set(nets.flatMap((n) => (hasGatewayBridge(n) ? [n.state.bridge] : [])));
    this.gatewayIndexes = new Set(links.filter((l) => this.watchedGateways.has(l.name)).map((l) => l.index));
    this.watchedPorts = new Set(eps.flatMap((e) => ('hostIf' in e.state ? [e.state.hostIf] : [])));
    for (const n of nets) {
      if (!hasGatewayBridge(n)) continue;
      // Checked without the network's lock first: a pass must not stall attaches when nothing
      // drifted (the common case). Repairs re-check everything under the lock.
      if (isBridgeNetwork(n) && !this.looksDrifted(n, eps.filter((e) => e.networkId === n.id), links, addrs)) continue;
      await this.networks.exclusive(n.id, async () => {
        const fresh = await this.networks.getNetwork(n.id);
        if (!fresh) return; // deleted meanwhile
        repairs.push(...(await this.repairNetwork(fresh, await this.networks.listEndpoints(n.id))));
      });
    }
    repairs.push(...(await this.repairSysctls(nets)));
    const drift = await this.networks.repairFirewallDrift();
    if (drift.length) {
      repairs.push({ what: 'firewall re-rendered', object: drift.slice(0, 3).join('; ') + (drift.length > 3 ? ` (+${drift.length - 3})` : '') });
    }
    repairs.push(...(await this.removeLeaks(links, nets, eps)));
    repairs.push(...(await this.freeOrphanAddresses()));
    for (const r of repairs) {
      this.counts.set(r.what, (this.counts.get(r.what) ?? 0) + 1);
      this.log.warn({ repair: r.what, object: r.object, ...(r.network ? { network: r.network } : {}) }, 'drift repaired');
    }
    return repairs;
  }

  /**
   * Forwarding, which every gateway network needs (someone's `sysctl -w net.ipv4.ip_forward=0`
   * cuts all containers off), and route_localnet on tsbridge bridges (127.0.0.1-published ports).
   * A few /proc reads per pass; sysctl changes send no link or address event.
   */
  private async repairSysctls(nets: NetworkRecord[]): Promise<Repair[]> {
    const gw = nets.filter(hasGatewayBridge);
    if (!gw.length) return [];
    const ns = this.ctx.host.netns;
    const repairs: Repair[] = [];
    const ensure = async (key: SysctlKey, object: string, what: string): Promise<void> => {
      const v = await sysctlGet(ns, key).catch(() => undefined);
      if (v === undefined || v.trim() === '1') return; // unreadable: the interface is gone, handled above
      await sysctlSet(ns, key, '1');
      repairs.push({ what, object });
    };
    await ensure('net.ipv4.ip_forward', 'net.ipv4.ip_forward', 'forwarding re-enabled');
    if (gw.some((n) => n.state.subnets6.length)) await ensure('net.ipv6.conf.all.forwarding', 'net.ipv6.conf.all.forwarding', 'forwarding re-enabled');
    for (const n of gw) {
      if (!isBridgeNetwork(n)) continue;
      await ensure(ifaceSysctl('ipv4', n.state.bridge, 'route_localnet'), `route_localnet on ${n.state.bridge}`, 'bridge sysctl restored');
      // IPv4-only bridges are left out of ip6tables on the strength of this (see makeBridge).
      if (!n.state.subnets6.length) await ensure(ifaceSysctl('ipv6', n.state.bridge, 'disable_ipv6'), `disable_ipv6 on ${n.state.bridge}`, 'bridge sysctl restored');
    }
    return repairs;
  }

  /** Whether a tsbridge network differs from its record, judged from dumps taken without a lock. */
  private looksDrifted(n: BridgeNetworkRecord, eps: EndpointRecord[], links: Link[], addrs: Address[]): boolean {
    const byName = new Map(links.map((l) => [l.name, l]));
    const gw = byName.get(n.state.bridge);
    if (!gw || !gw.up) return true;
    const have = new Set(addrs.filter((a) => a.index === gw.index).map((a) => a.cidr));
    if (n.state.gateways.some((g) => !have.has(g))) return true;
    return eps.some((ep) => {
      if (!('hostIf' in ep.state)) return false;
      const v = byName.get(ep.state.hostIf);
      return !!v && v.master !== gw.index;
    });
  }

  private async repairNetwork(n: NetworkRecord, eps: EndpointRecord[]): Promise<Repair[]> {
    if (!hasGatewayBridge(n)) return [];
    const h = this.ctx.host;
    const repairs: Repair[] = [];
    const name = n.state.bridge;
    const net = n.id.slice(0, 12);
    let gw: Link | undefined = await h.linkFind({ name });
    if (isOverlayNetwork(n)) {
      if (!(await netnsExists(netnsByName(n.state.netns)))) {
        // The namespace held the containers' bridge ends: nothing to rebuild them from.
        const key = `${n.id} netns`;
        if (!this.reported.has(key)) {
          this.reported.add(key);
          this.log.error({ network: net, netns: n.state.netns }, 'the overlay namespace is gone and its endpoints with it; remove and re-create the network');
        }
        return repairs;
      }
      if (!gw) {
        await makeGateway(this.ctx, n.state, n.state.subnets6.length > 0);
        gw = await h.linkGet({ name });
        repairs.push({ what: 'gateway interface recreated', network: net, object: name });
      }
    } else if (!gw) {
      await makeBridge(this.ctx, name, n.state.opts.mtu, n.state.subnets6.length > 0);
      gw = await h.linkGet({ name });
      repairs.push({ what: 'bridge recreated', network: net, object: name });
    }
    if (!gw.up || (this.ctx.owner && gw.alias !== this.ctx.owner)) {
      await h.linkSet({ name }, { up: true, ...(this.ctx.owner ? { alias: this.ctx.owner } : {}) });
      if (!gw.up) repairs.push({ what: 'interface brought up', network: net, object: name });
    }
    const have = new Set((await h.addrList({ link: { index: gw.index } })).map((a) => a.cidr));
    for (const g of n.state.gateways) {
      if (have.has(g)) continue;
      await h.addrAdd({ index: gw.index }, g, { nodad: true });
      repairs.push({ what: 'gateway address restored', network: net, object: `${g} on ${name}` });
    }
    // Endpoints' bridge ends: back on their bridge.
    // One link dump per namespace, not a lookup per endpoint: a pass over a network with a
    // thousand endpoints must not hold its lock (and delay attaches) for a thousand round trips.
    if (isBridgeNetwork(n)) {
      const byName = new Map((await h.linkList()).map((l) => [l.name, l]));
      for (const ep of eps) {
        if (!('hostIf' in ep.state)) continue;
        const v = byName.get(ep.state.hostIf);
        if (!v || v.master === gw.index) continue;
        await h.linkSet({ index: v.index }, { master: { index: gw.index }, up: true });
        await h.bridgePortSet({ index: v.index }, { hairpin: true });
        repairs.push({ what: 'veth re-attached to its bridge', network: net, object: ep.state.hostIf });
      }
    } else {
      const ovl = await overlayHandle(n.state.netns);
      const byName = new Map((await ovl.linkList()).map((l) => [l.name, l]));
      const br = byName.get(OVERLAY_BRIDGE);
      if (br) {
        for (const ep of eps) {
          const st = ep.state as OverlayEndpointState;
          const v = byName.get(st.hostIf);
          if (!v || v.master === br.index) continue;
          await ovl.linkSet({ index: v.index }, { master: { index: br.index }, up: true });
          repairs.push({ what: 'veth re-attached to its bridge', network: net, object: st.hostIf });
        }
      }
    }
    return repairs;
  }

  /**
   * Addresses tsipam gave Docker for a tsbridge network that no endpoint uses after a grace
   * period: the answer to RequestAddress was lost (the daemon died after committing it), so
   * dockerd never learnt the address and will never release it. Only Docker's allocations in
   * pools of our own networks: elsewhere tsipam cannot know which addresses are in use.
   */
  private async freeOrphanAddresses(): Promise<Repair[]> {
    const ipam = this.opts.ipam;
    if (!ipam) return [];
    const grace = this.opts.orphanGraceMs ?? 60_000;
    const repairs: Repair[] = [];
    const pools = await ipam.listPools();
    for (const n of await this.networks.listNetworks()) {
      if (!isBridgeNetwork(n)) continue; // tsoverlay's addresses live in the cluster store
      const subnets = [...n.state.subnets4, ...n.state.subnets6];
      const mine = pools.filter((p) => subnets.includes(p.subnet));
      if (!mine.length) continue;
      const orphans = async (): Promise<Array<{ pool: string; ip: string }>> => {
        const candidates: Array<{ pool: string; ip: string }> = [];
        for (const p of mine) {
          for (const a of await ipam.listAddresses(p.id)) {
            if (a.kind !== 'endpoint' || !a.owner.startsWith('docker:')) continue;
            if (Date.now() - Date.parse(a.at) < grace) continue; // a CreateEndpoint may be on its way
            candidates.push({ pool: p.id, ip: a.ip });
          }
        }
        // Endpoints are read only when some address could be an orphan (never for CNI networks,
        // whose addresses are their endpoints' own): a full read per network every pass adds up.
        if (!candidates.length) return [];
        const used = new Set((await this.networks.listEndpoints(n.id)).flatMap((e) => [e.spec.address4, e.spec.address6]).filter((a): a is string => !!a).map((a) => a.split('/')[0]!));
        return candidates.filter((c) => !used.has(c.ip));
      };
      // Looked for without the lock; released under it after looking again.
      if (!(await orphans()).length) continue;
      await this.networks.exclusive(n.id, async () => {
        for (const o of await orphans()) {
          await ipam.releaseAddress(o.pool, o.ip);
          repairs.push({ what: 'orphan address released', network: n.id.slice(0, 12), object: o.ip });
        }
      });
    }
    return repairs;
  }

  /**
   * `nets` and `eps` were read right after `links`, at the start of the pass: a create finishing
   * after that makes its links suspects once, and a suspect goes only when the next pass, with
   * fresh reads, still finds it unrecorded.
   */
  private async removeLeaks(links: Link[], nets: NetworkRecord[], eps: EndpointRecord[]): Promise<Repair[]> {
    const owner = this.ctx.owner;
    if (!owner) return [];
    if (this.networks.mutating) return []; // objects of a create in flight have no record yet
    const known = recordedLinkNames(nets, eps);
    const suspects = new Set(links.filter((l) => linkOwnedBy(l, owner) && !known.has(l.name)).map((l) => l.name));
    const repairs: Repair[] = [];
    for (const name of suspects) {
      if (!this.leakSuspects.has(name)) continue; // seen once: wait a pass, it may be a create finishing
      if (this.networks.mutating) break;
      if (await this.ctx.host.linkDelIfExists({ name })) repairs.push({ what: 'leaked link removed', object: name });
    }
    this.leakSuspects = suspects;
    return repairs;
  }
}
