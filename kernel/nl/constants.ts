// Numeric constants from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>,
// <linux/neighbour.h> and <linux/if_addr.h>. Only what tsnet uses; names follow the kernel's.

/** Netlink protocols (socket(AF_NETLINK, …, protocol)) tsnet speaks. */
export const NETLINK = { ROUTE: 0, NETFILTER: 12 } as const;

export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const;

export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ECHO: 0x8,
  DUMP_INTR: 0x10,
  // GET modifiers
  ROOT: 0x100,
  MATCH: 0x200,
  DUMP: 0x300,
  // NEW modifiers
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  // ack modifiers
  CAPPED: 0x100,
  ACK_TLVS: 0x200,
} as const;

export const NLMSGERR_ATTR = { MSG: 1, OFFS: 2 } as const;

export const RTM = {
  NEWLINK: 16, DELLINK: 17, GETLINK: 18, SETLINK: 19,
  NEWADDR: 20, DELADDR: 21, GETADDR: 22,
  NEWROUTE: 24, DELROUTE: 25, GETROUTE: 26,
  NEWNEIGH: 28, DELNEIGH: 29, GETNEIGH: 30,
} as const;

export const RTM_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(RTM).map(([k, v]) => [v, `RTM_${k}`]),
);

export const AF = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10 } as const;

export const IFF = { UP: 0x1, BROADCAST: 0x2, LOOPBACK: 0x8, POINTOPOINT: 0x10, RUNNING: 0x40, NOARP: 0x80, PROMISC: 0x100, MULTICAST: 0x1000, LOWER_UP: 0x10000 } as const;

export const IFLA = {
  ADDRESS: 1, BROADCAST: 2, IFNAME: 3, MTU: 4, LINK: 5, STATS: 7, MASTER: 10, PROTINFO: 12,
  TXQLEN: 13, OPERSTATE: 16, LINKINFO: 18, NET_NS_PID: 19, IFALIAS: 20, STATS64: 23, AF_SPEC: 26, GROUP: 27,
  NET_NS_FD: 28, EXT_MASK: 29, PROMISCUITY: 30, NUM_TX_QUEUES: 31, NUM_RX_QUEUES: 32, CARRIER: 33, LINK_NETNSID: 37, MIN_MTU: 50, MAX_MTU: 51,
} as const;

export const IFLA_INFO = { KIND: 1, DATA: 2, XSTATS: 3, SLAVE_KIND: 4, SLAVE_DATA: 5 } as const;
export const VETH_INFO_PEER = 1;

export const IFLA_VXLAN = {
  ID: 1, GROUP: 2, LINK: 3, LOCAL: 4, TTL: 5, TOS: 6, LEARNING: 7, AGEING: 8, LIMIT: 9,
  PORT_RANGE: 10, PROXY: 11, RSC: 12, L2MISS: 13, L3MISS: 14, PORT: 15, GROUP6: 16, LOCAL6: 17,
  UDP_CSUM: 18, UDP_ZERO_CSUM6_TX: 19, UDP_ZERO_CSUM6_RX: 20,
} as const;

export const IFLA_MACVLAN = { MODE: 1, FLAGS: 2 } as const;
export const MACVLAN_MODE = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 } as const;

export const IFLA_VLAN = { ID: 1 } as const;

export const IFLA_BRPORT = {
  STATE: 1, PRIORITY: 2, COST: 3, MODE: 4 /* hairpin */, GUARD: 5, PROTECT: 6, FAST_LEAVE: 7,
  LEARNING: 8, UNICAST_FLOOD: 9, PROXYARP: 10, NEIGH_SUPPRESS: 32, ISOLATED: 33,
} as const;

export const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3, BROADCAST: 4, CACHEINFO: 6, FLAGS: 8 } as const;
export const IFA_F = { SECONDARY: 0x01, NODAD: 0x02, OPTIMISTIC: 0x04, DADFAILED: 0x08, HOMEADDRESS: 0x10, DEPRECATED: 0x20, TENTATIVE: 0x40, PERMANENT: 0x80, NOPREFIXROUTE: 0x200 } as const;

export const RTA = { DST: 1, SRC: 2, IIF: 3, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, METRICS: 8, TABLE: 15 } as const;
export const RTN = { UNSPEC: 0, UNICAST: 1, LOCAL: 2, BROADCAST: 3, ANYCAST: 4, MULTICAST: 5, BLACKHOLE: 6, UNREACHABLE: 7, PROHIBIT: 8 } as const;
export const RT_SCOPE = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 } as const;
export const RT_TABLE = { MAIN: 254, LOCAL: 255 } as const;
export const RTPROT = { UNSPEC: 0, KERNEL: 2, BOOT: 3, STATIC: 4 } as const;
export const RTNH_F_ONLINK = 0x4;

export const NDA = { DST: 1, LLADDR: 2, CACHEINFO: 3, PROBES: 4, VLAN: 5, PORT: 6, VNI: 7, IFINDEX: 8, MASTER: 9 } as const;
export const NUD = { INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, DELAY: 0x08, PROBE: 0x10, FAILED: 0x20, NOARP: 0x40, PERMANENT: 0x80 } as const;
export const NTF = { USE: 0x01, SELF: 0x02, MASTER: 0x04, PROXY: 0x08, EXT_LEARNED: 0x10, OFFLOADED: 0x20, ROUTER: 0x80 } as const;

export const NLA_F_NESTED = 0x8000;
export const NLA_TYPE_MASK = ~(0x8000 | 0x4000) & 0xffff;
