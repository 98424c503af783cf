// tsbridge: one Linux bridge per network with the gateway address(es) on it, one veth pair per
// endpoint (host end enslaved to the bridge, container end handed to the runtime), NAT and
// isolation through the firewall backend.

import { randomBytes } from 'node:crypto';
import { NetError } from '../../kernel/errors.js';
import type { FirewallNetwork } from '../../kernel/firewall/iptables.js';
import { coalesce, type PublishedPort } from '../shared/ports.js';
import { ifaceSysctl, sysctlSet } from '../../kernel/sysctl.js';
import type { Tx } from '../../core/tx.js';
import type { NetnsRef } from '../../kernel/types.js';
import type { DriverContext, EndpointSpec, JoinPlan, NetworkDriver, NetworkSpec } from '../driver.js';
import { enableForwarding } from '../shared/forwarding.js';
import { gatewayPlan } from '../shared/join.js';
import { attachVeth, detachVeth, macFromIpv4, setAsideInSandbox, type VethEndpointState } from '../shared/veth.js';
import { directRouteOverlap } from '../shared/host-routes.js';
import { type BridgeOptions, parseBridgeOptions } from './options.js';

export interface BridgeNetworkState {
  bridge: string;
  opts: BridgeOptions;
  /** Gateway addresses we put on the bridge ("ip/len"). */
  gateways: string[];
  subnets4: string[];
  subnets6: string[];
  internal: boolean;
  /** Whether we created the bridge (a pre-existing one is refused, so this is always true today). */
  created: boolean;
}

export type BridgeEndpointState = VethEndpointState;

export const bridgeNameFor = (networkId: string): string => `tsb-${networkId.slice(0, 11)}`;

/** A random locally administered unicast MAC. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export { macFromIpv4 };

/** What the firewall renders for a tsbridge network. */
export function bridgeFirewallView(state: BridgeNetworkState, ports: readonly PublishedPort[]): FirewallNetwork {
  return {
    bridge: state.bridge, subnets4: state.subnets4, subnets6: state.subnets6,
    internal: state.internal, icc: state.opts.icc, masquerade: state.opts.masquerade,
    ...(state.opts.hostIpv4 ? { snatSource4: state.opts.hostIpv4 } : {}),
    ports: coalesce(ports), resolvers: state.gateways.map((g) => g.split('/')[0]!), ipv6Disabled: state.subnets6.length === 0,
  };
}

/**
 * The bridge link with its MAC and sysctls, down and without addresses (network creation, and
 * the reconciler rebuilding a deleted one). The undo is registered before anything can fail.
 */
export async function makeBridge(ctx: DriverContext, bridge: string, mtu: number | undefined, ipv6: boolean, tx?: Tx): Promise<void> {
  // A bridge without an assigned MAC takes the lowest MAC of its ports, so it changes as
  // containers come and go, and containers keep sending to the old gateway MAC from their ARP
  // cache (their DNS and egress break until it expires). An assigned MAC never changes, and one
  // derived from the bridge's name survives the reconciler rebuilding a deleted bridge.
  await ctx.host.linkAdd({ kind: 'bridge', name: bridge, mac: ctx.ownedMac?.(bridge) ?? randomMac(), ...(mtu ? { mtu } : {}) });
  tx?.onUndo(`delete bridge ${bridge}`, () => ctx.host.linkDelIfExists({ name: bridge }));
  // IPv4-only: no IPv6 at all on the bridge, so nothing can be routed over IPv6 from or to it
  // and the ip6tables render (one more nf_tables commit per change) can leave it out.
  await sysctlSet(ctx.host.netns, ifaceSysctl('ipv6', bridge, 'disable_ipv6'), ipv6 ? '0' : '1');
  // 127.0.0.1-published ports are DNATed out of this bridge with a loopback source until
  // masquerade rewrites it; the kernel drops such packets unless route_localnet is on. The
  // firewall drops the reverse direction (containers to 127/8), see kernel/firewall.
  await sysctlSet(ctx.host.netns, ifaceSysctl('ipv4', bridge, 'route_localnet'), '1');
}

export const bridgeDriver = {
  name: 'tsbridge' as const,

  parseOptions: parseBridgeOptions,

  async createNetwork(ctx: DriverContext, spec: NetworkSpec, tx: Tx): Promise<BridgeNetworkState> {
    const opts = parseBridgeOptions(spec.rawOptions);
    const bridge = opts.bridgeName ?? bridgeNameFor(spec.id);
    const clash = await directRouteOverlap(ctx, [...spec.ipv4, ...(spec.enableIPv6 ? spec.ipv6 : [])].map((x) => x.subnet));
    if (clash) throw new NetError('POOL_OVERLAP', clash);
    if (await ctx.host.linkFind({ name: bridge })) {
      // Docker's bridge driver and the reference CNI plugin take such a bridge over. tsnet does
      // not: it would set IPv6 off and route_localnet on an interface that may carry the host's
      // own traffic (a br0 holding the LAN uplink), and the firewall renders on the strength of those.
      throw new NetError('ALREADY_EXISTS', `a network interface named ${bridge} already exists on the host, and tsnet only uses bridges it creates; choose another bridge name (Docker: -o com.docker.network.bridge.name; CNI: "bridge")`);
    }
    await makeBridge(ctx, bridge, opts.mtu, spec.enableIPv6 && spec.ipv6.length > 0, tx);
    await enableForwarding(ctx, spec.enableIPv6);
    const gateways: string[] = [];
    for (const s of [...spec.ipv4, ...(spec.enableIPv6 ? spec.ipv6 : [])]) {
      if (!s.gateway) continue;
      await ctx.host.addrAdd({ name: bridge }, s.gateway, { nodad: true });
      gateways.push(s.gateway);
    }
    await ctx.host.linkSet({ name: bridge }, { up: true, ...(ctx.owner ? { alias: ctx.owner } : {}) });
    return {
      bridge, opts, gateways, internal: spec.internal, created: true,
      subnets4: spec.ipv4.map((s) => s.subnet), subnets6: spec.enableIPv6 ? spec.ipv6.map((s) => s.subnet) : [],
    };
  },

  async deleteNetwork(ctx: DriverContext, state: BridgeNetworkState): Promise<void> {
    if (state.created) await ctx.host.linkDelIfExists({ name: state.bridge });
  },

  createEndpoint(ctx: DriverContext, net: BridgeNetworkState, ep: EndpointSpec, tx: Tx): Promise<BridgeEndpointState> {
    return attachVeth(ctx, net.bridge, net.opts.mtu, ep, tx);
  },

  join(net: BridgeNetworkState, ep: BridgeEndpointState): JoinPlan {
    return gatewayPlan(ep.containerIf, net.gateways, net.internal, net.opts.containerIfPrefix);
  },

  async leave(ctx: DriverContext, _net: BridgeNetworkState, id: string, ep: BridgeEndpointState, sandbox: NetnsRef): Promise<void> {
    await setAsideInSandbox(ctx, id, ep, sandbox);
  },

  deleteEndpoint: (ctx: DriverContext, _net: BridgeNetworkState, _id: string, ep: BridgeEndpointState): Promise<void> => detachVeth(ctx, ep),
} satisfies NetworkDriver<BridgeNetworkState, BridgeEndpointState>;
