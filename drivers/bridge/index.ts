// tsbridge: one Linux bridge per network with the gateway address(es) on it, one veth pair per
// endpoint (host end enslaved to the bridge, container end handed to the runtime), NAT and
// isolation through the firewall backend.

import { randomBytes } from 'node:crypto';
import { NetError, isNotFound } from '../../kernel/errors.js';
import type { FirewallNetwork } from '../../kernel/firewall/iptables.js';
import { coalesce, type PublishedPort } from '../shared/ports.js';
import { ifaceSysctl, sysctlSet } from '../../kernel/sysctl.js';
import type { Tx } from '../../core/tx.js';
import type { DriverContext, EndpointSpec, JoinPlan, NetworkSpec } from '../driver.js';
import { gatewayPlan } from '../shared/join.js';
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

export interface BridgeEndpointState {
  hostIf: string;
  containerIf: string;
  mac?: string;
  /** The container end was created inside the sandbox (CNI), not in the host namespace. */
  inSandbox?: boolean;
}

export const bridgeNameFor = (networkId: string): string => `tsb-${networkId.slice(0, 11)}`;
const vethNames = (endpointId: string) => ({ host: `tsv${endpointId.slice(0, 12)}`, container: `tsc${endpointId.slice(0, 12)}` });

/** A random locally administered unicast MAC. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Docker's convention: 02:42 followed by the IPv4 address, so MACs are stable and readable. */
export function macFromIpv4(cidr: string): string {
  const parts = cidr.split('/')[0]!.split('.').map(Number);
  return ['02', '42', ...parts.map((p) => p.toString(16).padStart(2, '0'))].join(':');
}

export const bridgeDriver = {
  name: 'tsbridge' as const,

  parseOptions: parseBridgeOptions,

  firewallView(state: BridgeNetworkState, ports: readonly PublishedPort[]): FirewallNetwork {
    return {
      bridge: state.bridge, subnets4: state.subnets4, subnets6: state.subnets6,
      internal: state.internal, icc: state.opts.icc, masquerade: state.opts.masquerade,
      ports: coalesce(ports),
    };
  },

  async createNetwork(ctx: DriverContext, spec: NetworkSpec, tx: Tx): Promise<BridgeNetworkState> {
    const opts = parseBridgeOptions(spec.rawOptions);
    const bridge = opts.bridgeName ?? bridgeNameFor(spec.id);
    if (await ctx.host.linkFind({ name: bridge })) {
      throw new NetError('ALREADY_EXISTS', `a network interface named ${bridge} already exists on the host; choose another com.docker.network.bridge.name`);
    }
    // A bridge without an assigned MAC takes the lowest MAC of its ports, so it changes as
    // containers come and go, and containers keep sending to the old gateway MAC from their ARP
    // cache (their DNS and egress break until it expires). An assigned MAC never changes.
    await ctx.host.linkAdd({ kind: 'bridge', name: bridge, mac: randomMac(), ...(opts.mtu ? { mtu: opts.mtu } : {}) });
    tx.onUndo(`delete bridge ${bridge}`, () => ctx.host.linkDelIfExists({ name: bridge }));
    const gateways: string[] = [];
    for (const s of [...spec.ipv4, ...(spec.enableIPv6 ? spec.ipv6 : [])]) {
      if (!s.gateway) continue;
      await ctx.host.addrAdd({ name: bridge }, s.gateway, { nodad: true });
      gateways.push(s.gateway);
    }
    if (spec.enableIPv6 && spec.ipv6.length) {
      await sysctlSet(ctx.host.netns, ifaceSysctl('ipv6', bridge, 'disable_ipv6'), '0');
    }
    // 127.0.0.1-published ports are DNATed out of this bridge with a loopback source until
    // masquerade rewrites it; the kernel drops such packets unless route_localnet is on. The
    // firewall drops the reverse direction (containers to 127/8), see kernel/firewall.
    await sysctlSet(ctx.host.netns, ifaceSysctl('ipv4', bridge, 'route_localnet'), '1');
    await ctx.host.linkSetUp({ name: bridge });
    return {
      bridge, opts, gateways, internal: spec.internal, created: true,
      subnets4: spec.ipv4.map((s) => s.subnet), subnets6: spec.enableIPv6 ? spec.ipv6.map((s) => s.subnet) : [],
    };
  },

  async deleteNetwork(ctx: DriverContext, state: BridgeNetworkState): Promise<void> {
    if (state.created) await ctx.host.linkDelIfExists({ name: state.bridge });
  },

  async createEndpoint(ctx: DriverContext, net: BridgeNetworkState, ep: EndpointSpec, tx: Tx): Promise<BridgeEndpointState> {
    const names = vethNames(ep.id);
    const mac = ep.mac || (ep.address4 ? macFromIpv4(ep.address4) : undefined);
    const mtu = net.opts.mtu;
    const containerIf = ep.sandbox?.ifName ?? names.container;
    await ctx.host.linkAdd({
      kind: 'veth', name: names.host, ...(mtu ? { mtu } : {}),
      peer: { name: containerIf, ...(mac ? { mac } : {}), ...(mtu ? { mtu } : {}), ...(ep.sandbox ? { netns: ep.sandbox.netns } : {}) },
    });
    tx.onUndo(`delete veth ${names.host}`, () => ctx.host.linkDelIfExists({ name: names.host }));
    // The container end gets its addresses at once; DAD would delay them by seconds.
    await sysctlSet(ep.sandbox?.netns ?? ctx.host.netns, ifaceSysctl('ipv6', containerIf, 'accept_dad'), '0').catch(() => undefined);
    await ctx.host.linkSet({ name: names.host }, { master: { name: net.bridge }, up: true });
    // Hairpin lets a container reach its own published port through the host address.
    await ctx.host.bridgePortSet({ name: names.host }, { hairpin: true });
    return { hostIf: names.host, containerIf: containerIf, ...(mac ? { mac } : {}), ...(ep.sandbox ? { inSandbox: true } : {}) };
  },

  join(net: BridgeNetworkState, ep: BridgeEndpointState): JoinPlan {
    return gatewayPlan(ep.containerIf, net.gateways, net.internal);
  },

  async deleteEndpoint(ctx: DriverContext, ep: BridgeEndpointState): Promise<void> {
    // After Leave, Docker moves the container end back to the host; deleting either end removes both.
    // A container end made inside a sandbox is never in the host namespace: only the host end counts.
    for (const name of ep.inSandbox ? [ep.hostIf] : [ep.hostIf, ep.containerIf]) {
      try {
        await ctx.host.linkDel({ name });
        return;
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
  },
};
