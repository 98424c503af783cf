// Public shapes of the kernel layer: what drivers pass in and get back. Link kinds are a
// discriminated union (vishvananda/netlink's "link kinds as types"), never option maps.

/** A network namespace, named by a path that can be opened: /run/netns/NAME or /proc/PID/ns/net. */
export interface NetnsRef {
  readonly path: string;
}

export type LinkId = { readonly index: number } | { readonly name: string };

export type MacvlanMode = 'private' | 'vepa' | 'bridge' | 'passthru';

interface LinkCommon {
  name: string;
  mtu?: number;
  mac?: string;
  /** Create the link directly inside this namespace instead of the handle's. */
  netns?: NetnsRef;
  /**
   * Enslave it at creation (a bridge port from its first instant), by index in the namespace the
   * link is made in: one request instead of a create and a set.
   */
  master?: { readonly index: number };
  /** Bring it up at creation. */
  up?: boolean;
}

export type LinkSpec =
  | (LinkCommon & { kind: 'bridge' })
  | (LinkCommon & { kind: 'dummy' })
  | (LinkCommon & { kind: 'veth'; peer: { name: string; mac?: string; mtu?: number; netns?: NetnsRef } })
  | (LinkCommon & {
      kind: 'vxlan';
      vni: number;
      /** UDP destination port; the IANA 4789 unless set. */
      port?: number;
      local?: string;
      dev?: LinkId;
      /** Learning off unless asked: FDB entries come from the control plane. */
      learning?: boolean;
      /** Answer ARP/NDP from the device's neighbour table instead of flooding it to remote VTEPs. */
      proxy?: boolean;
    })
  | (LinkCommon & { kind: 'macvlan'; parent: LinkId; mode: MacvlanMode })
  | (LinkCommon & { kind: 'vlan'; parent: LinkId; vlanId: number });

export type LinkKind = LinkSpec['kind'];

export interface LinkStats {
  rxPackets: bigint;
  txPackets: bigint;
  rxBytes: bigint;
  txBytes: bigint;
  rxErrors: bigint;
  txErrors: bigint;
  rxDropped: bigint;
  txDropped: bigint;
}

export interface BridgePortFlags {
  hairpin?: boolean;
  isolated?: boolean;
  learning?: boolean;
  /** Off: frames to unknown MACs are not flooded out of this port (overlay VTEPs). */
  unicastFlood?: boolean;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND; undefined for plain devices such as lo or eth0. */
  kind?: string;
  mtu: number;
  mac?: string;
  flags: number;
  up: boolean;
  operState: number;
  /** Index of the bridge (or other master) this link is enslaved to. */
  master?: number;
  /** IFLA_LINK: the peer of a veth, the parent of a macvlan/vlan (possibly in another netns). */
  parentIndex?: number;
  /** The parent (a veth's peer) lives in another namespace (IFLA_LINK_NETNSID): parentIndex is that namespace's. */
  parentElsewhere?: boolean;
  stats?: LinkStats;
  vxlan?: { vni: number; port: number; local?: string; learning: boolean; proxy: boolean; dev?: number };
  macvlan?: { mode: MacvlanMode | number };
  vlan?: { id: number };
  /** IFLA_IFALIAS, when set. */
  alias?: string;
  /** IFLA_GROUP (0 is the default group). */
  group?: number;
  /** Present when the link is a port of a bridge. */
  bridgePort?: Required<BridgePortFlags>;
}

export interface LinkChange {
  up?: boolean;
  mtu?: number;
  mac?: string;
  name?: string;
  /** IFLA_IFALIAS: free text; tsnet marks the links it owns with it. */
  alias?: string;
  /** IFLA_GROUP: a link group, which one RTM_DELLINK can delete as a whole (see linkDelGroup). */
  group?: number;
  /** Enslave to this master; null releases it (nomaster). */
  master?: LinkId | null;
  netns?: NetnsRef;
  /**
   * Port flags of a link that is already a bridge port, in the same request as the rest (as
   * `ip link set … type bridge_slave` sends them); bridgePortSet sends them alone.
   */
  bridgePort?: BridgePortFlags;
}

export type AddressFamily = 4 | 6;

export interface Address {
  index: number;
  family: AddressFamily;
  /** "ip/len" */
  cidr: string;
  ip: string;
  prefixLen: number;
  scope: number;
  flags: number;
}

export interface AddressOptions {
  /** IPv6: skip duplicate address detection so the address is usable at once. */
  nodad?: boolean;
  /** Do not add the prefix route for the address. */
  noPrefixRoute?: boolean;
}

export type RouteScope = 'universe' | 'site' | 'link' | 'host' | 'nowhere';

export interface Route {
  /** "cidr" or "default"; family taken from it, or from gateway. */
  dst: string;
  gateway?: string;
  /** Output device. */
  dev?: LinkId;
  scope?: RouteScope;
  onlink?: boolean;
  table?: number;
  metric?: number;
  src?: string;
  protocol?: number;
  family?: AddressFamily;
}

export interface RouteInfo {
  family: AddressFamily;
  dst: string;
  gateway?: string;
  oif?: number;
  scope: number;
  table: number;
  protocol: number;
  type: number;
  metric?: number;
  src?: string;
  onlink: boolean;
}

export type NeighState = 'permanent' | 'noarp' | 'reachable' | 'stale';

export interface Neigh {
  dev: LinkId;
  /** 'bridge' for FDB entries; 4/6 for ARP/NDP entries. */
  family: 'bridge' | AddressFamily;
  /** The neighbour's IP (ARP/NDP), or the remote VTEP for a VXLAN FDB entry. */
  ip?: string;
  mac: string;
  state?: NeighState;
  /** FDB: 'self' programs the device itself (VXLAN), 'master' the bridge it belongs to. */
  fdbFlags?: 'self' | 'master';
  vni?: number;
}

export interface NeighInfo {
  family: 'bridge' | AddressFamily;
  index: number;
  ip?: string;
  mac?: string;
  state: number;
  flags: number;
  vni?: number;
  master?: number;
}
