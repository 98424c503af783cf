// IP address text <-> network-order bytes, as netlink carries them. Kept dependency-free because the
// codec runs on every kernel call; address arithmetic (pools, ranges) lives in ipam/ with ip-num.

import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export function ipFamily(ip: string): Family {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
}

export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map((p) => Number(p)));
  if (!isIPv6(ip)) throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
  let text = ip.split('%')[0]!;
  const out = Buffer.alloc(16);
  // A trailing dotted quad (::ffff:1.2.3.4) becomes the last two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const b = Buffer.from(tail.split('.').map((p) => Number(p)));
    text = `${text.slice(0, lastColon + 1)}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const restGroups = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const groups =
    rest === undefined
      ? headGroups
      : [...headGroups, ...Array<string>(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Formats 4 or 16 bytes; IPv6 in RFC 5952 form (longest zero run compressed, lower case). */
export function bytesToIp(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new TypeError(`address of ${b.length} bytes`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Parses "addr/len" (len defaulting to the full width). */
export function parseCidr(cidr: string): { ip: string; prefixLen: number; family: Family } {
  const slash = cidr.indexOf('/');
  const ip = slash < 0 ? cidr : cidr.slice(0, slash);
  const family = ipFamily(ip);
  const max = family === 4 ? 32 : 128;
  const lenText = slash < 0 ? String(max) : cidr.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) throw new TypeError(`bad prefix length in ${JSON.stringify(cidr)}`);
  return { ip, prefixLen: Number(lenText), family };
}

export function macToBytes(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new TypeError(`not a MAC address: ${JSON.stringify(mac)}`);
  return Buffer.from(mac.split(':').map((p) => parseInt(p, 16)));
}

export function bytesToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
