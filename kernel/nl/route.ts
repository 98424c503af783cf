// RTM_*ROUTE messages: struct rtmsg plus RTA_* attributes.

import type { AddressFamily, Route, RouteInfo, RouteScope } from '../types.js';
import { type Attr, Attrs, attr } from './attr.js';
import { AF, RTA, RTN, RTNH_F_ONLINK, RTPROT, RT_SCOPE, RT_TABLE } from './constants.js';
import { bytesToIp, ipFamily, ipToBytes, parseCidr } from './ip.js';

export const RTMSG_LEN = 12;

export function rtmsg(o: { family: number; dstLen?: number; table?: number; protocol?: number; scope?: number; type?: number; flags?: number }): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b.writeUInt8(o.family, 0);
  b.writeUInt8(o.dstLen ?? 0, 1);
  b.writeUInt8(0, 2); // src_len
  b.writeUInt8(0, 3); // tos
  b.writeUInt8((o.table ?? RT_TABLE.MAIN) < 256 ? (o.table ?? RT_TABLE.MAIN) : 0, 4);
  b.writeUInt8(o.protocol ?? RTPROT.UNSPEC, 5);
  b.writeUInt8(o.scope ?? RT_SCOPE.universe, 6);
  b.writeUInt8(o.type ?? RTN.UNSPEC, 7);
  b.writeUInt32LE(o.flags ?? 0, 8);
  return b;
}

export function routeFamily(r: Route): AddressFamily {
  if (r.family) return r.family;
  if (r.dst !== 'default') return parseCidr(r.dst).family;
  if (r.gateway) return ipFamily(r.gateway);
  throw new TypeError('a default route needs a gateway or an explicit family');
}

/**
 * Builds the message for add/replace (forDelete false) or delete. `oif` is the resolved output
 * device index. Deletes use scope NOWHERE, the kernel's wildcard, so they match whatever scope the
 * route was added with.
 */
export function routeMessage(r: Route, oif: number | undefined, forDelete: boolean): { header: Buffer; attrs: Attr[] } {
  const family = routeFamily(r);
  const { ip: dstIp, prefixLen } = r.dst === 'default' ? { ip: undefined, prefixLen: 0 } : parseCidr(r.dst);
  const scope: RouteScope = r.scope ?? (r.gateway || !oif ? 'universe' : 'link');
  const table = r.table ?? RT_TABLE.MAIN;
  const attrs: Attr[] = [];
  if (dstIp !== undefined) attrs.push(attr.raw(RTA.DST, ipToBytes(dstIp)));
  if (r.gateway) attrs.push(attr.raw(RTA.GATEWAY, ipToBytes(r.gateway)));
  if (oif !== undefined) attrs.push(attr.u32(RTA.OIF, oif));
  if (r.metric !== undefined) attrs.push(attr.u32(RTA.PRIORITY, r.metric));
  if (r.src) attrs.push(attr.raw(RTA.PREFSRC, ipToBytes(r.src)));
  if (table >= 256) attrs.push(attr.u32(RTA.TABLE, table));
  const header = rtmsg({
    family: family === 4 ? AF.INET : AF.INET6,
    dstLen: prefixLen,
    table,
    protocol: forDelete ? RTPROT.UNSPEC : (r.protocol ?? RTPROT.BOOT),
    scope: forDelete ? RT_SCOPE.nowhere : RT_SCOPE[scope],
    type: forDelete ? RTN.UNSPEC : RTN.UNICAST,
    flags: r.onlink ? RTNH_F_ONLINK : 0,
  });
  return { header, attrs };
}

export function parseRoute(payload: Buffer): RouteInfo {
  const familyRaw = payload.readUInt8(0);
  const dstLen = payload.readUInt8(1);
  const tableHdr = payload.readUInt8(4);
  const a = new Attrs(payload, RTMSG_LEN);
  const family: AddressFamily = familyRaw === AF.INET ? 4 : 6;
  const dst = a.buf(RTA.DST);
  const gw = a.buf(RTA.GATEWAY);
  const src = a.buf(RTA.PREFSRC);
  const info: RouteInfo = {
    family,
    dst: dst ? `${bytesToIp(dst)}/${dstLen}` : dstLen === 0 ? 'default' : `?/${dstLen}`,
    scope: payload.readUInt8(6),
    table: a.u32(RTA.TABLE) ?? tableHdr,
    protocol: payload.readUInt8(5),
    type: payload.readUInt8(7),
    onlink: (payload.readUInt32LE(8) & RTNH_F_ONLINK) !== 0,
  };
  if (gw) info.gateway = bytesToIp(gw);
  const oif = a.u32(RTA.OIF);
  if (oif !== undefined) info.oif = oif;
  const metric = a.u32(RTA.PRIORITY);
  if (metric !== undefined) info.metric = metric;
  if (src) info.src = bytesToIp(src);
  return info;
}
