// ctnetlink messages (<linux/netfilter/nfnetlink.h>, <linux/netfilter/nfnetlink_conntrack.h>):
// dumping the conntrack table and deleting single entries. Only what flushing the flows of a
// removed port mapping needs. Values inside ctnetlink attributes are in network byte order.

import { Attrs, attr, type Attr } from './attr.js';
import { NLA_F_NESTED } from './constants.js';
import type { ReplyMessage } from './message.js';

const NFNL_SUBSYS_CTNETLINK = 1;
export const IPCTNL_MSG = {
  GET: (NFNL_SUBSYS_CTNETLINK << 8) | 1,
  DELETE: (NFNL_SUBSYS_CTNETLINK << 8) | 2,
} as const;

export const CTA = { TUPLE_ORIG: 1, ID: 12, ZONE: 18 } as const;
const CTA_TUPLE = { IP: 1, PROTO: 2 } as const;
const CTA_PROTO = { NUM: 1, SRC_PORT: 2, DST_PORT: 3 } as const;

/** struct nfgenmsg: address family, NFNETLINK_V0, resource id (0). */
export function nfgenmsg(family: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(family, 0);
  return b;
}

/** One conntrack entry as much as a flush needs: what the original direction was aimed at. */
export interface ConntrackEntry {
  /** IP protocol number (6 tcp, 17 udp, 132 sctp). */
  proto: number;
  /** Destination port of the original direction; undefined for protocols without ports. */
  dstPort?: number;
  /** CTA_TUPLE_ORIG as the kernel sent it, to name the entry back in a delete. */
  origTuple: Buffer;
  zone?: number;
  id?: number;
}

export function parseConntrack(msg: ReplyMessage): ConntrackEntry | undefined {
  const a = new Attrs(msg.payload, 4);
  const origTuple = a.buf(CTA.TUPLE_ORIG);
  if (!origTuple) return undefined;
  const proto = new Attrs(origTuple).nested(CTA_TUPLE.PROTO);
  const num = proto?.u8(CTA_PROTO.NUM);
  if (num === undefined) return undefined;
  const dstPort = proto?.be16(CTA_PROTO.DST_PORT);
  const zone = a.buf(CTA.ZONE)?.readUInt16BE(0);
  const id = a.buf(CTA.ID)?.readUInt32BE(0);
  return { proto: num, origTuple, ...(dstPort !== undefined ? { dstPort } : {}), ...(zone !== undefined ? { zone } : {}), ...(id !== undefined ? { id } : {}) };
}

/** Attributes of an IPCTNL_MSG_CT_DELETE for exactly this entry (its id too: not a newer flow with the same tuple). */
export function deleteAttrs(e: ConntrackEntry): Attr[] {
  const attrs: Attr[] = [attr.raw(CTA.TUPLE_ORIG | NLA_F_NESTED, e.origTuple)];
  if (e.zone !== undefined) attrs.push(attr.be16(CTA.ZONE, e.zone));
  if (e.id !== undefined) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(e.id >>> 0);
    attrs.push(attr.raw(CTA.ID, b));
  }
  return attrs;
}
