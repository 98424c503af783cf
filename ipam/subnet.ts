// Address math for IPAM: CIDRs as bigint ranges (ip-num parses and validates), canonical text out.

import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange, Validator } from 'ip-num';
import { NetError } from '../kernel/errors.js';
import { bytesToIp } from '../kernel/nl/ip.js';

export type Family = 4 | 6;

export interface Subnet {
  family: Family;
  /** First address (the network address). */
  first: bigint;
  /** Last address (the IPv4 broadcast). */
  last: bigint;
  prefixLen: number;
  /** Canonical "network/len". */
  cidr: string;
}

export function ipToBig(ip: string): { family: Family; value: bigint } {
  if (Validator.isValidIPv4String(ip)[0]) return { family: 4, value: IPv4.fromString(ip).getValue() };
  if (Validator.isValidIPv6String(ip)[0]) return { family: 6, value: IPv6.fromString(ip).getValue() };
  throw new NetError('INVALID_ARGUMENT', `${JSON.stringify(ip)} is not an IP address`);
}

export function bigToIp(family: Family, v: bigint): string {
  const bytes = Buffer.alloc(family === 4 ? 4 : 16);
  let x = v;
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return bytesToIp(bytes);
}

/** Fixed-width hex of an address: sorts like the number, used in store keys. */
export function ipKey(family: Family, v: bigint): string {
  return v.toString(16).padStart(family === 4 ? 8 : 32, '0');
}

// Pools are parsed on every allocation; ip-num's validation is thorough but not free, so results
// are memoised (pure function, bounded cache).
const parsed = new Map<string, Subnet>();

/** Parses a CIDR; with `strict`, host bits must be zero (as Docker requires for --subnet). */
export function parseSubnet(text: string, strict = false): Subnet {
  const hit = parsed.get(text);
  if (hit && (!strict || hit.cidr === text)) return hit;
  const s = parseSubnetUncached(text, strict);
  if (parsed.size > 4096) parsed.clear();
  parsed.set(text, s);
  return s;
}

function parseSubnetUncached(text: string, strict: boolean): Subnet {
  if (typeof text !== 'string' || !text.includes('/')) throw new NetError('INVALID_ARGUMENT', `${JSON.stringify(text)} is not a CIDR (address/length)`);
  const [ip, len] = text.split('/') as [string, string];
  if (!/^\d{1,3}$/.test(len)) throw new NetError('INVALID_ARGUMENT', `${JSON.stringify(text)} has a bad prefix length`);
  const { family, value } = ipToBig(ip);
  const bits = family === 4 ? 32 : 128;
  const prefixLen = Number(len);
  if (prefixLen > bits) throw new NetError('INVALID_ARGUMENT', `${JSON.stringify(text)}: prefix length above ${bits}`);
  // ip-num validates the range form; we derive the bounds with bigint masks.
  const ok = family === 4 ? Validator.isValidIPv4CidrNotation(`${ip}/${len}`)[0] : Validator.isValidIPv6CidrNotation(`${ip}/${len}`)[0];
  if (!ok) throw new NetError('INVALID_ARGUMENT', `${JSON.stringify(text)} is not a valid CIDR`);
  const host = (1n << BigInt(bits - prefixLen)) - 1n;
  const first = value & ~host & ((1n << BigInt(bits)) - 1n);
  if (strict && first !== value) {
    throw new NetError('INVALID_ARGUMENT', `${text} has host bits set; did you mean ${bigToIp(family, first)}/${prefixLen}?`);
  }
  return { family, first, last: first | host, prefixLen, cidr: `${bigToIp(family, first)}/${prefixLen}` };
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

export function contains(outer: Subnet, inner: Subnet): boolean {
  return outer.family === inner.family && outer.first <= inner.first && inner.last <= outer.last;
}

export function containsIp(s: Subnet, family: Family, v: bigint): boolean {
  return s.family === family && s.first <= v && v <= s.last;
}

/** Splits `base` into consecutive subnets of `len` (for default pools); at most `max` of them. */
export function* splitSubnet(base: Subnet, len: number, max = Infinity): Generator<Subnet> {
  const bits = base.family === 4 ? 32 : 128;
  const step = 1n << BigInt(bits - len);
  let n = 0;
  for (let at = base.first; at <= base.last && n < max; at += step, n++) {
    yield { family: base.family, first: at, last: at + step - 1n, prefixLen: len, cidr: `${bigToIp(base.family, at)}/${len}` };
  }
}

// Keep the range types referenced so a future ip-num upgrade that drops them fails to compile here.
export type { IPv4CidrRange, IPv6CidrRange };
