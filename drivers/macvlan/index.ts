// tsmacvlan: containers get a macvlan interface on a host uplink ("parent") and sit directly on
// that LAN: addresses from the network's subnet, the LAN's router as gateway, no bridge, no NAT.
// Optionally a host shim (a macvlan on the host in bridge mode) lets the host reach its own
// containers, which a parent interface never can.

import { createHash } from 'node:crypto';
import { NetError } from '../../kernel/errors.js';
import { validateIfName } from '../../kernel/names.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import type { MacvlanMode, NetnsRef } from '../../kernel/types.js';
import type { Tx } from '../../core/tx.js';
import { siblingStates, type DriverContext, type EndpointSpec, type JoinPlan, type NetworkDriver, type NetworkSpec, type SiblingNetwork } from '../driver.js';
import { gatewayPlan } from '../shared/join.js';
import { CONTAINER_IFACE_PREFIX, parseIfacePrefix } from '../shared/options.js';

export interface MacvlanOptions {
  parent: string;
  mode: MacvlanMode;
  mtu?: number;
  hostShim: boolean;
  /** The container interface's name before Docker's index; "eth" when unset. */
  containerIfPrefix?: string;
}

export interface MacvlanNetworkState {
  opts: MacvlanOptions;
  subnets4: string[];
  subnets6: string[];
  gateways: string[];
  internal: boolean;
  /** The host shim interface and its address, when host_shim is on. */
  shim?: { name: string; address: string };
  /** A parent of the form IFACE.VLAN that this network created (removed with the last user). */
  createdVlan?: string;
}

export interface MacvlanEndpointState {
  /** The macvlan link, made in the host namespace under this name; Docker moves and renames it. */
  ifName: string;
  /** Its MAC as the kernel made it: how Leave knows it in the sandbox, under dockerd's name. */
  mac?: string;
}

const MODES: readonly MacvlanMode[] = ['bridge', 'private', 'vepa', 'passthru'];
const KEYS = ['parent', 'macvlan_mode', 'com.docker.network.driver.mtu', 'host_shim', CONTAINER_IFACE_PREFIX];

export function parseMacvlanOptions(raw: Record<string, string>): MacvlanOptions {
  for (const k of Object.keys(raw)) {
    if (!KEYS.includes(k)) throw new NetError('UNSUPPORTED_OPTION', `tsmacvlan does not know option ${JSON.stringify(k)}; known: ${KEYS.join(', ')}`);
  }
  const parent = raw.parent;
  if (!parent) throw new NetError('INVALID_ARGUMENT', 'tsmacvlan needs -o parent=IFACE (the host uplink its containers join)');
  try {
    validateIfName(parent);
  } catch (e) {
    throw new NetError('INVALID_ARGUMENT', `parent: ${(e as Error).message}`);
  }
  const mode = (raw.macvlan_mode ?? 'bridge') as MacvlanMode;
  if (!MODES.includes(mode)) throw new NetError('INVALID_ARGUMENT', `macvlan_mode must be one of ${MODES.join(', ')}, not ${JSON.stringify(raw.macvlan_mode)}`);
  const mtu = raw['com.docker.network.driver.mtu'] === undefined ? undefined : Number(raw['com.docker.network.driver.mtu']);
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) throw new NetError('INVALID_ARGUMENT', 'com.docker.network.driver.mtu must be between 68 and 65535');
  const shim = raw.host_shim ?? 'false';
  if (!/^(true|false)$/i.test(shim)) throw new NetError('INVALID_ARGUMENT', 'host_shim must be true or false');
  const prefix = raw[CONTAINER_IFACE_PREFIX];
  return {
    parent, mode, ...(mtu !== undefined ? { mtu } : {}), hostShim: /^true$/i.test(shim),
    ...(prefix !== undefined ? { containerIfPrefix: parseIfacePrefix(CONTAINER_IFACE_PREFIX, prefix) } : {}),
  };
}

const shimName = (networkId: string): string => `tsmh${createHash('sha256').update(networkId).digest('hex').slice(0, 10)}`;

export const macvlanDriver = {
  name: 'tsmacvlan' as const,
  parseOptions: parseMacvlanOptions,

  async createNetwork(ctx: DriverContext, spec: NetworkSpec, tx: Tx, siblings: readonly SiblingNetwork[]): Promise<MacvlanNetworkState> {
    const opts = parseMacvlanOptions(spec.rawOptions);
    const others = siblingStates<MacvlanNetworkState>(siblings, 'tsmacvlan');
    const auxAddresses = spec.aux ?? [];
    let createdVlan: string | undefined;
    const vlan = /^(.+)\.(\d{1,4})$/.exec(opts.parent);
    if (vlan && !(await ctx.host.linkFind({ name: opts.parent }))) {
      // parent=eth0.10: make the 802.1Q sub-interface on eth0 (removed with the last network using it).
      const [, base, id] = vlan as unknown as [string, string, string];
      if (!(await ctx.host.linkFind({ name: base }))) throw new NetError('INVALID_ARGUMENT', `parent ${opts.parent}: interface ${base} does not exist`);
      try {
        await ctx.host.linkAdd({ kind: 'vlan', name: opts.parent, parent: { name: base }, vlanId: Number(id) });
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOTSUP' || (e as { code?: string }).code === 'EOPNOTSUPP') {
          throw new NetError('UNSUPPORTED_OPTION', `parent ${opts.parent} needs an 802.1Q sub-interface, and this kernel has no 802.1Q (8021q) support`);
        }
        throw e;
      }
      tx.onUndo(`delete ${opts.parent}`, () => ctx.host.linkDelIfExists({ name: opts.parent }));
      await ctx.host.linkSetUp({ name: opts.parent });
      createdVlan = opts.parent;
    }
    const parent = await ctx.host.linkFind({ name: opts.parent });
    if (!parent) throw new NetError('INVALID_ARGUMENT', `parent interface ${opts.parent} does not exist`);
    if (!parent.up) throw new NetError('INVALID_ARGUMENT', `parent interface ${opts.parent} is down`);
    const clash = others.find((o) => o.opts.parent === opts.parent && (o.opts.mode !== opts.mode || opts.mode === 'passthru'));
    if (clash) throw new NetError('ALREADY_EXISTS', `parent ${opts.parent} is already used by a tsmacvlan network in ${clash.opts.mode} mode; networks on one parent must share a mode (and passthru takes it alone)`);
    const state: MacvlanNetworkState = {
      opts: { ...opts, mtu: opts.mtu ?? parent.mtu },
      subnets4: spec.ipv4.map((s) => s.subnet),
      subnets6: spec.ipv6.map((s) => s.subnet),
      gateways: [...spec.ipv4, ...spec.ipv6].flatMap((s) => (s.gateway ? [s.gateway] : [])),
      internal: spec.internal,
      ...(createdVlan ? { createdVlan } : {}),
    };
    if (opts.hostShim) {
      const address = auxAddresses[0];
      if (!address) throw new NetError('INVALID_ARGUMENT', 'host_shim needs an address for the host: give one with --aux-address host=IP');
      const name = shimName(spec.id);
      await ctx.host.linkAdd({ kind: 'macvlan', name, parent: { name: opts.parent }, mode: 'bridge' });
      tx.onUndo(`delete ${name}`, () => ctx.host.linkDelIfExists({ name }));
      await ctx.host.addrAdd({ name }, address, { nodad: true });
      await ctx.host.linkSetUp({ name });
      state.shim = { name, address };
    }
    return state;
  },

  /** A VLAN parent we made stays while another network still uses it. */
  async deleteNetwork(ctx: DriverContext, state: MacvlanNetworkState, siblings: readonly SiblingNetwork[]): Promise<void> {
    const stillUsed = siblingStates<MacvlanNetworkState>(siblings, 'tsmacvlan').some((o) => o.opts.parent === state.opts.parent);
    if (state.shim) await ctx.host.linkDelIfExists({ name: state.shim.name });
    if (state.createdVlan && !stillUsed) await ctx.host.linkDelIfExists({ name: state.createdVlan });
  },

  async createEndpoint(ctx: DriverContext, net: MacvlanNetworkState, ep: EndpointSpec, tx: Tx): Promise<MacvlanEndpointState> {
    const ifName = `tsm${ep.id.slice(0, 12)}`;
    const made = await ctx.host.linkAdd({
      kind: 'macvlan', name: ifName, parent: { name: net.opts.parent }, mode: net.opts.mode,
      ...(net.opts.mtu ? { mtu: net.opts.mtu } : {}), ...(ep.mac ? { mac: ep.mac } : {}),
    });
    tx.onUndo(`delete ${ifName}`, () => ctx.host.linkDelIfExists({ name: ifName }));
    const mac = made?.mac ?? ep.mac;
    return { ifName, ...(mac ? { mac } : {}) };
  },

  /**
   * After Leave, dockerd would set the interface down, rename it and move it back to the host
   * namespace (the move costs the kernel an rcu_barrier(), 13 ms here), only for DeleteEndpoint to
   * delete it. A macvlan has no peer that could take a set-aside end with it later, so it is
   * deleted here, in the sandbox; dockerd then finds nothing to move and skips all three (as for
   * tsbridge, see veth.ts). Only our own link goes: a macvlan in the sandbox with the endpoint's MAC
   * whose parent is the network's parent in the host namespace. Anything else is left alone.
   */
  async leave(ctx: DriverContext, net: MacvlanNetworkState, _id: string, ep: MacvlanEndpointState, sandbox: NetnsRef): Promise<void> {
    if (!ep.mac) return; // made before the MAC was recorded
    const [parent, stillHere] = await Promise.all([ctx.host.linkFind({ name: net.opts.parent }), ctx.host.linkFind({ name: ep.ifName })]);
    if (!parent || stillHere) return; // never moved: DeleteEndpoint deletes it where it is
    await using sb = await NetlinkHandle.open(sandbox);
    const mine = (await sb.linkList()).find((l) => l.kind === 'macvlan' && l.mac === ep.mac && l.parentElsewhere && l.parentIndex === parent.index);
    if (mine) await sb.linkDelIfExists({ index: mine.index });
  },

  join(net: MacvlanNetworkState, ep: MacvlanEndpointState): JoinPlan {
    return gatewayPlan(ep.ifName, net.gateways, net.internal, net.opts.containerIfPrefix);
  },

  async deleteEndpoint(ctx: DriverContext, _net: MacvlanNetworkState, _id: string, ep: MacvlanEndpointState): Promise<void> {
    await ctx.host.linkDelIfExists({ name: ep.ifName });
  },
} satisfies NetworkDriver<MacvlanNetworkState, MacvlanEndpointState>;
