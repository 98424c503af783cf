// RTM_*LINK messages: struct ifinfomsg plus IFLA_* attributes, for every link kind tsnet creates.

import type { BridgePortFlags, Link, LinkChange, LinkSpec, LinkStats, MacvlanMode } from '../types.js';
import { type Attr, Attrs, attr, encodeAttrs } from './attr.js';
import {
  AF, IFF, IFLA, IFLA_BRPORT, IFLA_INFO, IFLA_MACVLAN, IFLA_VLAN, IFLA_VXLAN, MACVLAN_MODE, VETH_INFO_PEER,
} from './constants.js';
import { bytesToIp, bytesToMac, ipFamily, ipToBytes, macToBytes } from './ip.js';

export const IFINFOMSG_LEN = 16;

export function ifinfomsg(opts: { family?: number; index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(opts.family ?? AF.UNSPEC, 0);
  b.writeUInt16LE(0, 2); // ifi_type: set by the kernel
  b.writeInt32LE(opts.index ?? 0, 4);
  b.writeUInt32LE(opts.flags ?? 0, 8);
  b.writeUInt32LE(opts.change ?? 0, 12);
  return b;
}

/**
 * Attributes for creating a link. `nsFd` maps each NetnsRef path to an fd the caller opened (the
 * kernel resolves IFLA_NET_NS_FD in our process at send time). `resolveIndex` gives indexes for
 * links named in the spec (parents, vxlan dev).
 */
export function linkCreateAttrs(spec: LinkSpec, nsFd: (path: string) => number, parentIndex?: number): Attr[] {
  const attrs: Attr[] = [attr.str(IFLA.IFNAME, spec.name)];
  if (spec.mtu !== undefined) attrs.push(attr.u32(IFLA.MTU, spec.mtu));
  if (spec.mac !== undefined) attrs.push(attr.raw(IFLA.ADDRESS, macToBytes(spec.mac)));
  if (spec.netns) attrs.push(attr.u32(IFLA.NET_NS_FD, nsFd(spec.netns.path)));
  if (spec.master) attrs.push(attr.u32(IFLA.MASTER, spec.master.index));
  const info: Attr[] = [attr.str(IFLA_INFO.KIND, spec.kind)];
  switch (spec.kind) {
    case 'bridge':
    case 'dummy':
      break;
    case 'veth': {
      // One queue each way, asked for up front. Without it the kernel allocates a queue per CPU and
      // then cuts the veth back to one (veth_init_queues), and each cut on a registered device
      // waits for an expedited RCU grace period under RTNL: two per pair, 100-250 µs of every
      // attach on a 2-vCPU VM. The end state is the kernel's own default of one real queue.
      const oneQueue = [attr.u32(IFLA.NUM_TX_QUEUES, 1), attr.u32(IFLA.NUM_RX_QUEUES, 1)];
      attrs.push(...oneQueue);
      const peer: Attr[] = [attr.str(IFLA.IFNAME, spec.peer.name), ...oneQueue];
      if (spec.peer.mtu ?? spec.mtu) peer.push(attr.u32(IFLA.MTU, (spec.peer.mtu ?? spec.mtu)!));
      if (spec.peer.mac) peer.push(attr.raw(IFLA.ADDRESS, macToBytes(spec.peer.mac)));
      if (spec.peer.netns) peer.push(attr.u32(IFLA.NET_NS_FD, nsFd(spec.peer.netns.path)));
      // VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's attributes.
      const peerBody = Buffer.concat([ifinfomsg(), encodeAttrs(peer)]);
      info.push(attr.nest(IFLA_INFO.DATA, [attr.raw(VETH_INFO_PEER, peerBody)]));
      break;
    }
    case 'vxlan': {
      const data: Attr[] = [
        attr.u32(IFLA_VXLAN.ID, spec.vni),
        attr.be16(IFLA_VXLAN.PORT, spec.port ?? 4789),
        attr.u8(IFLA_VXLAN.LEARNING, spec.learning ? 1 : 0),
        attr.u8(IFLA_VXLAN.PROXY, spec.proxy ? 1 : 0),
      ];
      if (spec.local) {
        data.push(attr.raw(ipFamily(spec.local) === 4 ? IFLA_VXLAN.LOCAL : IFLA_VXLAN.LOCAL6, ipToBytes(spec.local)));
      }
      if (parentIndex !== undefined) data.push(attr.u32(IFLA_VXLAN.LINK, parentIndex));
      info.push(attr.nest(IFLA_INFO.DATA, data));
      break;
    }
    case 'macvlan':
      if (parentIndex === undefined) throw new Error('macvlan needs its parent index');
      attrs.push(attr.u32(IFLA.LINK, parentIndex));
      info.push(attr.nest(IFLA_INFO.DATA, [attr.u32(IFLA_MACVLAN.MODE, MACVLAN_MODE[spec.mode])]));
      break;
    case 'vlan':
      if (parentIndex === undefined) throw new Error('vlan needs its parent index');
      attrs.push(attr.u32(IFLA.LINK, parentIndex));
      info.push(attr.nest(IFLA_INFO.DATA, [attr.u16(IFLA_VLAN.ID, spec.vlanId)]));
      break;
  }
  attrs.push(attr.nest(IFLA.LINKINFO, info));
  return attrs;
}

export function linkChangeAttrs(change: LinkChange, nsFd: (path: string) => number, masterIndex?: number | null): Attr[] {
  const attrs: Attr[] = [];
  if (change.mtu !== undefined) attrs.push(attr.u32(IFLA.MTU, change.mtu));
  if (change.mac !== undefined) attrs.push(attr.raw(IFLA.ADDRESS, macToBytes(change.mac)));
  if (change.name !== undefined) attrs.push(attr.str(IFLA.IFNAME, change.name));
  if (change.alias !== undefined) attrs.push(attr.str(IFLA.IFALIAS, change.alias));
  if (change.group !== undefined) attrs.push(attr.u32(IFLA.GROUP, change.group));
  if (masterIndex !== undefined) attrs.push(attr.u32(IFLA.MASTER, masterIndex ?? 0));
  if (change.netns) attrs.push(attr.u32(IFLA.NET_NS_FD, nsFd(change.netns.path)));
  if (change.bridgePort) {
    // The master's kind names the slave data; the kernel hands it to the bridge's slave_changelink.
    attrs.push(attr.nest(IFLA.LINKINFO, [attr.str(IFLA_INFO.SLAVE_KIND, 'bridge'), attr.nest(IFLA_INFO.SLAVE_DATA, brportAttrs(change.bridgePort))]));
  }
  return attrs;
}

export function bridgePortAttrs(flags: BridgePortFlags): Attr[] {
  return [attr.nest(IFLA.PROTINFO, brportAttrs(flags))];
}

/** IFLA_BRPORT_* attributes: inside IFLA_PROTINFO (AF_BRIDGE) or IFLA_INFO_SLAVE_DATA alike. */
function brportAttrs(flags: BridgePortFlags): Attr[] {
  const inner: Attr[] = [];
  if (flags.hairpin !== undefined) inner.push(attr.u8(IFLA_BRPORT.MODE, flags.hairpin ? 1 : 0));
  if (flags.isolated !== undefined) inner.push(attr.u8(IFLA_BRPORT.ISOLATED, flags.isolated ? 1 : 0));
  if (flags.learning !== undefined) inner.push(attr.u8(IFLA_BRPORT.LEARNING, flags.learning ? 1 : 0));
  if (flags.unicastFlood !== undefined) inner.push(attr.u8(IFLA_BRPORT.UNICAST_FLOOD, flags.unicastFlood ? 1 : 0));
  return inner;
}

const MACVLAN_MODE_NAMES = new Map<number, MacvlanMode>(
  (Object.entries(MACVLAN_MODE) as Array<[MacvlanMode, number]>).map(([k, v]) => [v, k]),
);

function parseStats64(b: Buffer): LinkStats {
  const u = (i: number): bigint => b.readBigUInt64LE(i * 8);
  return {
    rxPackets: u(0), txPackets: u(1), rxBytes: u(2), txBytes: u(3),
    rxErrors: u(4), txErrors: u(5), rxDropped: u(6), txDropped: u(7),
  };
}

export function parseLink(payload: Buffer): Link {
  const index = payload.readInt32LE(4);
  const flags = payload.readUInt32LE(8);
  const a = new Attrs(payload, IFINFOMSG_LEN);
  const link: Link = {
    index,
    name: a.str(IFLA.IFNAME) ?? '',
    mtu: a.u32(IFLA.MTU) ?? 0,
    flags,
    up: (flags & IFF.UP) !== 0,
    operState: a.u8(IFLA.OPERSTATE) ?? 0,
  };
  const mac = a.buf(IFLA.ADDRESS);
  if (mac && mac.length === 6) link.mac = bytesToMac(mac);
  const alias = a.str(IFLA.IFALIAS);
  if (alias) link.alias = alias;
  const group = a.u32(IFLA.GROUP);
  if (group) link.group = group;
  const master = a.u32(IFLA.MASTER);
  if (master) link.master = master;
  const parent = a.u32(IFLA.LINK);
  // A device that names itself as its link is its own parent (plain devices); a peer in another
  // namespace (IFLA_LINK_NETNSID) may well have the same index number as this link.
  const elsewhere = a.has(IFLA.LINK_NETNSID);
  if (parent !== undefined && (parent !== index || elsewhere)) link.parentIndex = parent;
  if (parent !== undefined && elsewhere) link.parentElsewhere = true;
  const stats = a.buf(IFLA.STATS64);
  if (stats && stats.length >= 64) link.stats = parseStats64(stats);
  const info = a.nested(IFLA.LINKINFO);
  if (info) {
    const kind = info.str(IFLA_INFO.KIND);
    if (kind) link.kind = kind;
    // Only the kinds read below: a bridge's own data is ~50 attributes, and every link event
    // about it would pay for them.
    const data = kind === 'vxlan' || kind === 'macvlan' || kind === 'vlan' ? info.nested(IFLA_INFO.DATA) : undefined;
    if (kind === 'vxlan' && data) {
      const local = data.buf(IFLA_VXLAN.LOCAL) ?? data.buf(IFLA_VXLAN.LOCAL6);
      const dev = data.u32(IFLA_VXLAN.LINK);
      link.vxlan = {
        vni: data.u32(IFLA_VXLAN.ID) ?? 0,
        port: data.be16(IFLA_VXLAN.PORT) ?? 0,
        learning: (data.u8(IFLA_VXLAN.LEARNING) ?? 0) !== 0,
        proxy: (data.u8(IFLA_VXLAN.PROXY) ?? 0) !== 0,
        ...(local ? { local: bytesToIp(local) } : {}),
        ...(dev ? { dev } : {}),
      };
    } else if (kind === 'macvlan' && data) {
      const mode = data.u32(IFLA_MACVLAN.MODE) ?? 0;
      link.macvlan = { mode: MACVLAN_MODE_NAMES.get(mode) ?? mode };
    } else if (kind === 'vlan' && data) {
      link.vlan = { id: data.u16(IFLA_VLAN.ID) ?? 0 };
    }
    if (info.str(IFLA_INFO.SLAVE_KIND) === 'bridge') {
      const port = info.nested(IFLA_INFO.SLAVE_DATA);
      link.bridgePort = {
        hairpin: (port?.u8(IFLA_BRPORT.MODE) ?? 0) !== 0,
        isolated: (port?.u8(IFLA_BRPORT.ISOLATED) ?? 0) !== 0,
        learning: (port?.u8(IFLA_BRPORT.LEARNING) ?? 1) !== 0,
        unicastFlood: (port?.u8(IFLA_BRPORT.UNICAST_FLOOD) ?? 1) !== 0,
      };
    }
  }
  return link;
}
