// Flushes the conntrack entries of removed port mappings, so a new container on the same host port
// gets new flows instead of the old container's (UDP flows never end by themselves). Spoken over
// ctnetlink, as libnetwork does: one dump of the family's table, then a delete per matching entry,
// all on one socket. The conntrack tool it replaces ran once per port: 1000 ports took 6.5 s.

import { isNotFound } from '../errors.js';
import { NetlinkSocket } from '../netlink-socket.js';
import { AF, NETLINK, NLM_F } from '../nl/constants.js';
import { IPCTNL_MSG, deleteAttrs, nfgenmsg, parseConntrack, type ConntrackEntry } from '../nl/conntrack.js';

export interface ConntrackMatch {
  proto: 'tcp' | 'udp' | 'sctp';
  family: 4 | 6;
  hostPort: number;
  hostPortEnd: number;
}

const PROTO_NUMBER = { tcp: 6, udp: 17, sctp: 132 } as const;

/** Entries whose original direction went to one of the mappings' host ports (any address). */
export function matchingEntries(entries: readonly ConntrackEntry[], matches: readonly ConntrackMatch[]): ConntrackEntry[] {
  return entries.filter((e) => e.dstPort !== undefined &&
    matches.some((m) => PROTO_NUMBER[m.proto] === e.proto && e.dstPort! >= m.hostPort && e.dstPort! <= m.hostPortEnd));
}

const OP_NAMES: Record<number, string> = { [IPCTNL_MSG.GET]: 'IPCTNL_MSG_CT_GET', [IPCTNL_MSG.DELETE]: 'IPCTNL_MSG_CT_DELETE' };

/** A ctnetlink socket in the daemon's own namespace. */
class ConntrackSocket extends NetlinkSocket {
  static async open(): Promise<ConntrackSocket> {
    const { lane, portId } = await NetlinkSocket.openLane(undefined, NETLINK.NETFILTER);
    return new ConntrackSocket(undefined, lane, portId, (type) => OP_NAMES[type] ?? `type ${type}`);
  }

  async list(family: 4 | 6): Promise<ConntrackEntry[]> {
    const msgs = await this.exchange(IPCTNL_MSG.GET, NLM_F.DUMP, nfgenmsg(family === 4 ? AF.INET : AF.INET6), [], 'conntrack');
    return msgs.map(parseConntrack).filter((e): e is ConntrackEntry => e !== undefined);
  }

  async delete(family: 4 | 6, e: ConntrackEntry): Promise<void> {
    await this.exchange(IPCTNL_MSG.DELETE, 0, nfgenmsg(family === 4 ? AF.INET : AF.INET6), deleteAttrs(e), 'conntrack');
  }
}

/** Deletes the flows to these host ports in the daemon's own namespace; returns how many went. */
export async function flushConntrack(matches: readonly ConntrackMatch[]): Promise<number> {
  if (!matches.length) return 0;
  const ct = await ConntrackSocket.open();
  try {
    let deleted = 0;
    for (const family of [4, 6] as const) {
      const wanted = matches.filter((m) => m.family === family);
      if (!wanted.length) continue;
      // Handed to the lane together: it runs them back to back. An entry that ended meanwhile is fine.
      const results = await Promise.allSettled(matchingEntries(await ct.list(family), wanted).map((e) => ct.delete(family, e)));
      for (const r of results) {
        if (r.status === 'fulfilled') deleted++;
        else if (!isNotFound(r.reason)) throw r.reason;
      }
    }
    return deleted;
  } finally {
    await ct.close();
  }
}
