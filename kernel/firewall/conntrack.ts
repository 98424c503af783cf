// Flushes the conntrack entries of removed port mappings, so a new container on the same host port
// gets new flows instead of the old container's (UDP flows never end by themselves). Spoken over
// ctnetlink, as libnetwork does: one dump of the family's table, then a delete per matching entry,
// all on one socket. The conntrack tool it replaces ran once per port: 1000 ports took 6.5 s.

import { KernelError, isNotFound } from '../errors.js';
import { isNativeError, native } from '../native.js';
import { AF, NLM_F } from '../nl/constants.js';
import { encodeRequest, parseReply } from '../nl/message.js';
import { IPCTNL_MSG, NETLINK_NETFILTER, deleteAttrs, nfgenmsg, parseConntrack, type ConntrackEntry } from '../nl/conntrack.js';

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

/** Deletes the flows to these host ports in the daemon's own namespace; returns how many went. */
export async function flushConntrack(matches: readonly ConntrackMatch[]): Promise<number> {
  if (!matches.length) return 0;
  let opened: { fd: number; portId: number };
  try {
    opened = await native().openNetlink(null, NETLINK_NETFILTER);
  } catch (e) {
    throw isNativeError(e) ? new KernelError(e.errno, 'ctnetlink open', 'host netns') : e;
  }
  const lane = new (native().NetlinkLane)(opened.fd, opened.portId, null);
  let seq = Math.floor(Math.random() * 0x7fffffff);
  const exchange = async (type: number, flags: number, family: number, attrs: ReturnType<typeof deleteAttrs>, what: string) => {
    seq = (seq + 1) >>> 0;
    let raw: Buffer;
    try {
      raw = await lane.transact(seq, encodeRequest({ type, flags, header: nfgenmsg(family), attrs }, seq, opened.portId));
    } catch (e) {
      throw isNativeError(e) ? new KernelError(e.errno, what, 'conntrack') : e;
    }
    const reply = parseReply(raw);
    if (reply.status.errno !== 0) throw new KernelError(reply.status.errno, what, 'conntrack', reply.status.extack);
    return reply.messages;
  };
  try {
    let deleted = 0;
    for (const family of [4, 6] as const) {
      const wanted = matches.filter((m) => m.family === family);
      if (!wanted.length) continue;
      const af = family === 4 ? AF.INET : AF.INET6;
      const table = (await exchange(IPCTNL_MSG.GET, NLM_F.DUMP, af, [], 'IPCTNL_MSG_CT_GET'))
        .map(parseConntrack).filter((e): e is ConntrackEntry => e !== undefined);
      // Handed to the lane together: it runs them back to back. An entry that ended meanwhile is fine.
      const results = await Promise.allSettled(matchingEntries(table, wanted).map((e) =>
        exchange(IPCTNL_MSG.DELETE, NLM_F.ACK, af, deleteAttrs(e), 'IPCTNL_MSG_CT_DELETE')));
      for (const r of results) {
        if (r.status === 'fulfilled') deleted++;
        else if (!isNotFound(r.reason)) throw r.reason;
      }
    }
    return deleted;
  } finally {
    lane.close();
  }
}
