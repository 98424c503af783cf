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

export interface ResponseHead {
  id: number;
  flags: number;
  questions: dnsPacket.Question[];
  /** Our EDNS0 UDP size, when the client sent an OPT record (we answer with one). */
  udpPayloadSize?: number;
}

const HEADER_TC = 0x0200;

/** The 11 bytes of an OPT record on the root name: our UDP size, version 0, no options. */
function optRecord(size: number): Buffer {
  const b = Buffer.alloc(11);
  b.writeUInt16BE(41, 1);
  b.writeUInt16BE(size, 3);
  return b;
}

/**
 * Encodes a response of at most `limit` bytes. Answers that all carry the question's own name (every
 * local answer) point back to it (2 bytes instead of the name, as the native responder sends them).
 * What does not fit is cut at a whole record and TC is set: a client that cannot retry over TCP
 * (musl, busybox) still gets as many addresses as fit, as from Docker's resolver, instead of none.
 */
export function encodeResponse(head: ResponseHead, answers: Rr[], authorities: Rr[], limit: number): Buffer {
  const opt = head.udpPayloadSize ? optRecord(head.udpPayloadSize) : Buffer.alloc(0);
  const qname = head.questions[0]?.name;
  const owned = qname !== undefined && answers.length > 0 && authorities.length === 0 && answers.every((a) => a.name === qname)
    ? answers.map(ownerlessRecord) : [];
  if (owned.length && owned.every((r): r is Buffer => r !== undefined)) {
    const top = dnsPacket.encode({ type: 'response', id: head.id, flags: head.flags, questions: head.questions } as dnsPacket.Packet);
    const parts: Buffer[] = [top];
    let size = top.length + opt.length;
    let n = 0;
    for (const r of owned) {
      if (size + 2 + r.length > limit) break;
      parts.push(Buffer.from([0xc0, 0x0c]), r); // a pointer to the question's name at offset 12
      size += 2 + r.length;
      n++;
    }
    parts.push(opt);
    const buf = Buffer.concat(parts, size);
    buf.writeUInt16BE(n, 6);
    buf.writeUInt16BE(opt.length ? 1 : 0, 10);
    if (n < owned.length) buf.writeUInt16BE(buf.readUInt16BE(2) | HEADER_TC, 2);
    return buf;
  }
  const encode = (an: Rr[], ns: Rr[], tc: boolean): Buffer => dnsPacket.encode({
    type: 'response', id: head.id, flags: head.flags | (tc ? HEADER_TC : 0), questions: head.questions, answers: an, authorities: ns,
    ...(head.udpPayloadSize ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: head.udpPayloadSize } as dnsPacket.Answer] } : {}),
  } as dnsPacket.Packet);
  const full = encode(answers, authorities, false);
  if (full.length <= limit) return full;
  // The most leading answers that fit (authorities go first: they only matter beside a full answer).
  let lo = 0;
  let hi = answers.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (encode(answers.slice(0, mid), [], true).length <= limit) lo = mid;
    else hi = mid - 1;
  }
  return encode(answers.slice(0, lo), [], true);
}
