// RTM_*NEIGH messages: struct ndmsg plus NDA_* attributes. Used for ARP/NDP entries and for bridge
// and VXLAN forwarding-database (FDB) entries (family AF_BRIDGE).

import type { Neigh, NeighInfo, NeighState } from '../types.js';
import { type Attr, Attrs, attr } from './attr.js';
import { AF, NDA, NTF, NUD } from './constants.js';
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from './ip.js';

export const NDMSG_LEN = 12;

const STATE: Record<NeighState, number> = {
  permanent: NUD.PERMANENT,
  noarp: NUD.NOARP,
  reachable: NUD.REACHABLE,
  stale: NUD.STALE,
};

export function ndmsg(family: number, index: number, state = 0, flags = 0): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  b.writeUInt8(0, 11);
  return b;
}

export function neighFamily(n: Pick<Neigh, 'family'>): number {
  return n.family === 'bridge' ? AF.BRIDGE : n.family === 4 ? AF.INET : AF.INET6;
}

export function neighMessage(n: Neigh, index: number): { header: Buffer; attrs: Attr[] } {
  const family = neighFamily(n);
  let flags = 0;
  if (n.family === 'bridge') flags = n.fdbFlags === 'master' ? NTF.MASTER : NTF.SELF;
  const attrs: Attr[] = [attr.raw(NDA.LLADDR, macToBytes(n.mac))];
  if (n.ip) attrs.push(attr.raw(NDA.DST, ipToBytes(n.ip)));
  if (n.vni !== undefined) attrs.push(attr.u32(NDA.VNI, n.vni));
  return { header: ndmsg(family, index, STATE[n.state ?? 'permanent'], flags), attrs };
}

export function parseNeigh(payload: Buffer): NeighInfo {
  const familyRaw = payload.readUInt8(0);
  const a = new Attrs(payload, NDMSG_LEN);
  const info: NeighInfo = {
    family: familyRaw === AF.BRIDGE ? 'bridge' : familyRaw === AF.INET ? 4 : 6,
    index: payload.readInt32LE(4),
    state: payload.readUInt16LE(8),
    flags: payload.readUInt8(10),
  };
  const dst = a.buf(NDA.DST);
  if (dst && (dst.length === 4 || dst.length === 16)) info.ip = bytesToIp(dst);
  const ll = a.buf(NDA.LLADDR);
  if (ll && ll.length === 6) info.mac = bytesToMac(ll);
  const vni = a.u32(NDA.VNI);
  if (vni !== undefined) info.vni = vni;
  const master = a.u32(NDA.MASTER);
  if (master !== undefined) info.master = master;
  return info;
}
