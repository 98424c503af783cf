// RTM_*ADDR messages: struct ifaddrmsg plus IFA_* attributes.

import type { Address, AddressOptions } from '../types.js';
import { type Attr, Attrs, attr } from './attr.js';
import { AF, IFA, IFA_F } from './constants.js';
import { bytesToIp, ipToBytes, parseCidr } from './ip.js';

export const IFADDRMSG_LEN = 8;

export function ifaddrmsg(family: number, prefixLen: number, index: number, flags = 0, scope = 0): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefixLen, 1);
  b.writeUInt8(flags & 0xff, 2);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

/** IPv4 broadcast for a prefix, as `ip addr add … brd +` computes it; none for /31 and /32. */
export function ipv4Broadcast(ip: string, prefixLen: number): string | undefined {
  if (prefixLen >= 31) return undefined;
  const b = ipToBytes(ip);
  const host = prefixLen === 0 ? 0xffffffff : (0xffffffff >>> prefixLen) >>> 0;
  const v = (b.readUInt32BE(0) | host) >>> 0;
  const out = Buffer.alloc(4);
  out.writeUInt32BE(v);
  return bytesToIp(out);
}

export function addrMessage(index: number, cidr: string, opts: AddressOptions = {}): { header: Buffer; attrs: Attr[] } {
  const { ip, prefixLen, family } = parseCidr(cidr);
  const bytes = ipToBytes(ip);
  let flags = 0;
  if (opts.nodad) flags |= IFA_F.NODAD;
  if (opts.noPrefixRoute) flags |= IFA_F.NOPREFIXROUTE;
  const attrs: Attr[] = [attr.raw(IFA.LOCAL, bytes), attr.raw(IFA.ADDRESS, bytes)];
  if (family === 4) {
    const brd = ipv4Broadcast(ip, prefixLen);
    if (brd) attrs.push(attr.raw(IFA.BROADCAST, ipToBytes(brd)));
  }
  if (flags) attrs.push(attr.u32(IFA.FLAGS, flags));
  return { header: ifaddrmsg(family === 4 ? AF.INET : AF.INET6, prefixLen, index, flags), attrs };
}

export function parseAddr(payload: Buffer): Address {
  const familyRaw = payload.readUInt8(0);
  const prefixLen = payload.readUInt8(1);
  const scope = payload.readUInt8(3);
  const index = payload.readUInt32LE(4);
  const a = new Attrs(payload, IFADDRMSG_LEN);
  const bytes = a.buf(IFA.LOCAL) ?? a.buf(IFA.ADDRESS) ?? Buffer.alloc(familyRaw === AF.INET ? 4 : 16);
  const ip = bytesToIp(bytes);
  return {
    index,
    family: familyRaw === AF.INET ? 4 : 6,
    ip,
    prefixLen,
    cidr: `${ip}/${prefixLen}`,
    scope,
    flags: a.u32(IFA.FLAGS) ?? payload.readUInt8(2),
  };
}
