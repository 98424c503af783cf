// tsoverlay: one subnet across hosts. On each host a bridge holding the network's gateway (the
// same address and MAC everywhere, so containers leave through their own host) and a VXLAN port
// on it. Learning is off: every remote MAC, its VTEP and its ARP/NDP answer come from the cluster
// store (see peers.ts), and the VXLAN device answers ARP itself (proxy), so no ARP and no
// unknown-unicast crosses the underlay; broadcast goes only to hosts that have the network.

import { createHash } from 'node:crypto';
import { NetError } from '../../kernel/errors.js';
import type { FirewallNetwork } from '../../kernel/firewall/iptables.js';
import { ifaceSysctl, sysctlSet } from '../../kernel/sysctl.js';
import type { Tx } from '../../core/tx.js';
import type { NetnsRef } from '../../kernel/types.js';
import { siblingStates, type DriverContext, type EndpointSpec, type JoinPlan, type NetworkDriver, type NetworkSpec, type SiblingNetwork } from '../driver.js';
import { enableForwarding } from '../shared/forwarding.js';
import { gatewayPlan } from '../shared/join.js';
import { coalesce, type PublishedPort } from '../shared/ports.js';
import { attachVeth, detachVeth, setAsideInSandbox, upAsBridgePort, type VethEndpointState } from '../shared/veth.js';
import type { ClusterState } from './cluster.js';
import { parseOverlayOptions, type OverlayOptions } from './options.js';
import { directRouteOverlap } from '../shared/host-routes.js';
import { createOverlayNetns, overlayHandle, overlayNetnsName, removeOverlayNetns } from './netns.js';
import { netnsByName } from '../../kernel/netns.js';

/** The VXLAN header and the outer Ethernet, IP and UDP headers. */
export const VXLAN_OVERHEAD = 50;
export const VXLAN_PORT = 4789;

export interface OverlayNetworkState {
  /** The cluster-wide name. */
  cluster: string;
  vni: number;
  /** The host-side gateway interface (a veth into the overlay bridge); firewall and DNS use it. */
  bridge: string;
  /** This network's namespace, holding OVERLAY_BRIDGE and OVERLAY_VXLAN. */
  netns: string;
  mtu: number;
  gatewayMac: string;
  gateways: string[];
  subnets4: string[];
  subnets6: string[];
  internal: boolean;
  opts: OverlayOptions;
}

export interface OverlayEndpointState extends VethEndpointState {
  /** The addresses this endpoint holds in the cluster store ("ip/len"). */
  address4?: string;
  address6?: string;
}

/** Names inside the overlay namespace (it holds one network, so they need no id). */
export const OVERLAY_BRIDGE = 'br0';
export const OVERLAY_VXLAN = 'vxlan0';
const GATEWAY_PEER = 'gw0';

/** The same locally administered MAC for the gateway on every host, derived from the name. */
export function gatewayMacFor(cluster: string): string {
  const h = createHash('sha256').update(`tsnet-gateway\0${cluster}`).digest();
  h[0] = (h[0]! & 0xfe) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export const gatewayIfFor = (vni: number): string => `tso-${vni}`;

function needCluster(ctx: DriverContext): ClusterState {
  if (!ctx.cluster) throw new NetError('UNSUPPORTED_OPTION', 'tsoverlay needs a cluster store: start the daemon with --cluster-store etcd://HOST:PORT --advertise-addr IP');
  return ctx.cluster;
}

/** The underlay link holding the advertise address (the VTEP's parent), for its index and MTU. */
async function underlay(ctx: DriverContext, vtep: string): Promise<{ index: number; mtu: number }> {
  const addr = (await ctx.host.addrList()).find((a) => a.ip === vtep);
  if (!addr) throw new NetError('INVALID_ARGUMENT', `the advertise address ${vtep} is not on any interface of this host`);
  const link = await ctx.host.linkGet({ index: addr.index });
  return { index: link.index, mtu: link.mtu };
}

/** What the firewall renders for a tsoverlay network (its gateway veth is the "bridge"). */
export function overlayFirewallView(state: OverlayNetworkState, ports: readonly PublishedPort[]): FirewallNetwork {
  return {
    bridge: state.bridge, subnets4: state.subnets4, subnets6: state.subnets6,
    internal: state.internal, icc: true, masquerade: true, ports: coalesce(ports), resolvers: state.gateways.map((g) => g.split('/')[0]!),
  };
}

/**
 * The gateway: same address and MAC on every host, on the host end of a veth into the overlay
 * bridge; without its addresses (network creation, and the reconciler rebuilding a deleted one).
 */
export async function makeGateway(ctx: DriverContext, st: Pick<OverlayNetworkState, 'bridge' | 'gatewayMac' | 'mtu' | 'netns'>, ipv6: boolean, tx?: Tx): Promise<void> {
  const ovl = await overlayHandle(st.netns);
  await ovl.linkDelIfExists({ name: GATEWAY_PEER }); // a half left by a deleted pair
  await ctx.host.linkAdd({ kind: 'veth', name: st.bridge, mac: st.gatewayMac, mtu: st.mtu, peer: { name: GATEWAY_PEER, mtu: st.mtu, netns: netnsByName(st.netns) } });
  tx?.onUndo(`delete ${st.bridge}`, () => ctx.host.linkDelIfExists({ name: st.bridge }));
  // The peer is a bridge port like every endpoint's bridge end; the gateway's addresses live on
  // the host end.
  await upAsBridgePort(ovl, GATEWAY_PEER, { master: { name: OVERLAY_BRIDGE } });
  if (ipv6) await sysctlSet(ctx.host.netns, ifaceSysctl('ipv6', st.bridge, 'disable_ipv6'), '0');
  await sysctlSet(ctx.host.netns, ifaceSysctl('ipv4', st.bridge, 'route_localnet'), '1');
}

export const overlayDriver = {
  name: 'tsoverlay' as const,

  parseOptions: parseOverlayOptions,

  async createNetwork(ctx: DriverContext, spec: NetworkSpec, tx: Tx, siblings: readonly SiblingNetwork[]): Promise<OverlayNetworkState> {
    const cluster = needCluster(ctx);
    const taken = siblingStates<OverlayNetworkState>(siblings, 'tsoverlay');
    const opts = parseOverlayOptions(spec.rawOptions);
    const name = opts.clusterNetwork;
    if (!name) throw new NetError('INVALID_ARGUMENT', 'tsoverlay needs -o tsnet.cluster_network=NAME, the same name on every host');
    if (spec.ipv4.length > 1 || spec.ipv6.length > 1) throw new NetError('INVALID_ARGUMENT', 'tsoverlay takes one IPv4 and at most one IPv6 subnet');
    const s4 = spec.ipv4[0];
    const s6 = spec.enableIPv6 ? spec.ipv6[0] : undefined;
    if (!s4?.gateway) throw new NetError('INVALID_ARGUMENT', 'tsoverlay needs an IPv4 subnet with a gateway');
    const clash = await directRouteOverlap(ctx, [s4.subnet, ...(s6 ? [s6.subnet] : [])]);
    if (clash) throw new NetError('POOL_OVERLAP', clash);
    const dup = taken.find((t) => t.cluster === name);
    if (dup) throw new NetError('ALREADY_EXISTS', `this host already has a network for cluster network ${name} (bridge ${dup.bridge})`);
    const under = await underlay(ctx, cluster.vtep);

    const net = await cluster.ensureNetwork({
      name, ...(opts.vni ? { vni: opts.vni } : {}), ...(opts.mtu ? { mtu: opts.mtu } : {}),
      subnet4: s4.subnet, gateway4: s4.gateway,
      ...(s6 ? { subnet6: s6.subnet, ...(s6.gateway ? { gateway6: s6.gateway } : {}) } : {}),
    });
    // Removes the cluster network again if we were its first and only host.
    tx.onUndo(`leave cluster network ${name}`, () => cluster.leave(name));
    const bridge = gatewayIfFor(net.vni);
    if (await ctx.host.linkFind({ name: bridge })) throw new NetError('ALREADY_EXISTS', `a network interface named ${bridge} already exists on this host`);
    const mtu = opts.mtu ?? net.mtu ?? under.mtu - VXLAN_OVERHEAD;
    const gatewayMac = gatewayMacFor(name);
    const nsName = overlayNetnsName(cluster.vtep, net.vni);
    const ns = await createOverlayNetns(nsName);
    tx.onUndo(`remove namespace ${nsName}`, () => removeOverlayNetns(nsName));
    const ovl = await overlayHandle(nsName);
    await ovl.linkAdd({ kind: 'bridge', name: OVERLAY_BRIDGE, mtu });
    // The VXLAN device is made from the host namespace (its UDP socket lives there, on the
    // underlay) but placed in the overlay namespace.
    await ctx.host.linkAdd({
      kind: 'vxlan', name: OVERLAY_VXLAN, vni: net.vni, port: VXLAN_PORT, local: cluster.vtep, dev: { index: under.index },
      learning: false, proxy: true, mtu, netns: ns,
    });
    await ovl.linkSet({ name: OVERLAY_VXLAN }, { master: { name: OVERLAY_BRIDGE }, up: true });
    // The bridge knows every remote MAC from static entries: frames to any other MAC stay home.
    await ovl.bridgePortSet({ name: OVERLAY_VXLAN }, { learning: false, unicastFlood: false });
    await makeGateway(ctx, { bridge, gatewayMac, mtu, netns: nsName }, !!s6, tx);
    await ovl.linkSetUp({ name: OVERLAY_BRIDGE });
    const gateways = [net.gateway4!, ...(s6?.gateway ? [s6.gateway] : [])];
    for (const g of gateways) await ctx.host.addrAdd({ name: bridge }, g, { nodad: true });
    await ctx.host.linkSet({ name: bridge }, { up: true, ...(ctx.owner ? { alias: ctx.owner } : {}) });
    await cluster.join(name);
    await enableForwarding(ctx, !!s6);
    return {
      cluster: name, vni: net.vni, bridge, netns: nsName, mtu, gatewayMac, gateways,
      subnets4: [s4.subnet], subnets6: s6 ? [s6.subnet] : [], internal: spec.internal, opts,
    };
  },

  async deleteNetwork(ctx: DriverContext, state: OverlayNetworkState): Promise<void> {
    await removeOverlayNetns(state.netns); // the bridge, the VXLAN port and the gateway veth with it
    await ctx.host.linkDelIfExists({ name: state.bridge });
    try {
      await ctx.cluster?.leave(state.cluster);
    } catch (e) {
      // The membership is leased: it goes by itself if etcd cannot be told now.
      ctx.log.warn({ network: state.cluster, err: (e as Error).message }, 'could not leave the cluster network; its membership will expire');
    }
  },

  /** Addresses come from the cluster store: claimed as given (Docker's IPAM, --ip) or allocated. */
  async createEndpoint(ctx: DriverContext, net: OverlayNetworkState, spec: EndpointSpec, tx: Tx): Promise<OverlayEndpointState> {
    const cluster = needCluster(ctx);
    const take = async (given: string | undefined, subnet: string | undefined): Promise<string | undefined> => {
      if (!subnet) return undefined;
      let cidr = given;
      if (cidr) await cluster.claimAddress(net.cluster, cidr.split('/')[0]!, spec.id);
      else cidr = await cluster.allocateAddress(net.cluster, subnet, spec.id);
      tx.onUndo(`release ${cidr}`, () => cluster.releaseAddress(net.cluster, cidr!.split('/')[0]!, spec.id));
      return cidr;
    };
    const address4 = await take(spec.address4, net.subnets4[0]);
    const address6 = await take(spec.address6, net.subnets6[0]);
    const veth = await attachVeth(ctx, { bridge: OVERLAY_BRIDGE, in: await overlayHandle(net.netns), netns: netnsByName(net.netns) }, net.mtu, { ...spec, ...(address4 ? { address4 } : {}) }, tx);
    await cluster.publishEndpoint(net.cluster, {
      id: spec.id, mac: veth.mac!, names: [],
      ...(address4 ? { ip4: address4.split('/')[0]! } : {}), ...(address6 ? { ip6: address6.split('/')[0]! } : {}),
    });
    tx.onUndo('withdraw endpoint', () => cluster.withdrawEndpoint(net.cluster, spec.id));
    return { ...veth, ...(address4 ? { address4 } : {}), ...(address6 ? { address6 } : {}) };
  },

  join(net: OverlayNetworkState, ep: OverlayEndpointState): JoinPlan {
    return gatewayPlan(ep.containerIf, net.gateways, net.internal, net.opts.containerIfPrefix);
  },


  async leave(ctx: DriverContext, net: OverlayNetworkState, id: string, ep: OverlayEndpointState, sandbox: NetnsRef): Promise<void> {
    await setAsideInSandbox(ctx, id, ep, sandbox, await overlayHandle(net.netns));
  },

  /** Local objects first (they always can go); the cluster entries when etcd answers. */
  async deleteEndpoint(ctx: DriverContext, net: OverlayNetworkState, id: string, ep: OverlayEndpointState): Promise<void> {
    await detachVeth(ctx, ep, await overlayHandle(net.netns).catch(() => undefined));
    const cluster = needCluster(ctx);
    try {
      await cluster.withdrawEndpoint(net.cluster, id);
      for (const a of [ep.address4, ep.address6]) if (a) await cluster.releaseAddress(net.cluster, a.split('/')[0]!, id);
    } catch (e) {
      // Removing a container must not wait for etcd. What is left there (an address, a leased
      // endpoint key) is this host's, and OverlayPeers.reconcileOwned removes it once etcd answers.
      ctx.log.warn({ network: net.cluster, endpoint: id, err: (e as Error).message }, 'cluster store not told of the removal yet; will be reconciled');
    }
  },
} satisfies NetworkDriver<OverlayNetworkState, OverlayEndpointState>;
