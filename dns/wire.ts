// dns-packet with the fields its decoder fills in but its type definitions omit.

import * as dnsPacket from 'dns-packet';

export type Rr = dnsPacket.Answer & { ttl?: number; class?: string };

export type Decoded = dnsPacket.Packet & {
  rcode?: string;
  opcode?: string;
  flag_qr?: boolean;
  flag_tc?: boolean;
  flag_rd?: boolean;
  flag_do?: boolean;
  answers?: Rr[];
  authorities?: Rr[];
  additionals?: Array<Rr & { udpPayloadSize?: number }>;
};

export function decode(buf: Buffer): Decoded {
  return dnsPacket.decode(buf) as Decoded;
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

export { dnsPacket };

// The record and name codecs dns-packet exports but its type definitions leave out.
const codecs = dnsPacket as unknown as {
  answer: { encode(rr: Rr): Buffer };
  name: { encode(name: string): Buffer };
};

const TYPE_CODES: Record<string, number> = { A: 1, PTR: 12, AAAA: 28 };

/** True when a name can go on the wire as it is: ASCII labels of 1..63 bytes, 253 at most. */
function wireSafe(name: string): boolean {
  if (name.length === 0 || name.length > 253 || !/^[\x21-\x7e]+$/.test(name)) return false;
  return name.split('.').every((l) => l.length >= 1 && l.length <= 63);
}

/**
 * The key of a question in the native responder's table: the name in wire form, lower-case, then
 * the type as two bytes. Undefined for names the table should not hold (JS answers those).
 */
export function questionKey(name: string, type: 'A' | 'AAAA' | 'PTR'): Buffer | undefined {
  const lower = name.toLowerCase().replace(/\.$/, '');
  if (!wireSafe(lower)) return undefined;
  const wire = codecs.name.encode(lower);
  const key = Buffer.alloc(wire.length + 2);
  wire.copy(key);
  key.writeUInt16BE(TYPE_CODES[type]!, wire.length);
  return key;
}

/** One record in wire form without its owner name (type, class, TTL, length, data). */
export function ownerlessRecord(rr: Rr): Buffer | undefined {
  if (rr.type === 'PTR' && !wireSafe(String(rr.data).replace(/\.$/, ''))) return undefined;
  return codecs.answer.encode({ ...rr, name: '.' }).subarray(1);
}
