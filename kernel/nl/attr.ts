// Netlink attributes (struct nlattr / rtattr): 2-byte length, 2-byte type, payload padded to 4.
// Encoding builds a tree and serialises it once; decoding returns a multimap of type → payloads.

import { NLA_F_NESTED, NLA_TYPE_MASK } from './constants.js';

export const align4 = (n: number): number => (n + 3) & ~3;

export type Attr = { type: number; value: Buffer } | { type: number; nested: Attr[] };

export const attr = {
  raw: (type: number, value: Buffer): Attr => ({ type, value }),
  u8: (type: number, v: number): Attr => ({ type, value: Buffer.from([v & 0xff]) }),
  u16: (type: number, v: number): Attr => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return { type, value: b };
  },
  /** Network byte order, for ports (IFLA_VXLAN_PORT). */
  be16: (type: number, v: number): Attr => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return { type, value: b };
  },
  u32: (type: number, v: number): Attr => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return { type, value: b };
  },
  i32: (type: number, v: number): Attr => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return { type, value: b };
  },
  /** NUL-terminated string, as the kernel expects for names and kinds. */
  str: (type: number, s: string): Attr => ({ type, value: Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]) }),
  flag: (type: number): Attr => ({ type, value: Buffer.alloc(0) }),
  nest: (type: number, children: Attr[]): Attr => ({ type: type | NLA_F_NESTED, nested: children }),
};

export function attrSize(a: Attr): number {
  const payload = 'value' in a ? a.value.length : a.nested.reduce((n, c) => n + align4(attrSize(c)), 0);
  return 4 + payload;
}

/** Writes one attribute at offset; returns the aligned size written. */
export function writeAttr(buf: Buffer, offset: number, a: Attr): number {
  const len = attrSize(a);
  buf.writeUInt16LE(len, offset);
  buf.writeUInt16LE(a.type, offset + 2);
  if ('value' in a) {
    a.value.copy(buf, offset + 4);
  } else {
    let o = offset + 4;
    for (const c of a.nested) o += writeAttr(buf, o, c);
  }
  return align4(len);
}

export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const size = attrs.reduce((n, a) => n + align4(attrSize(a)), 0);
  const buf = Buffer.alloc(size);
  let o = 0;
  for (const a of attrs) o += writeAttr(buf, o, a);
  return buf;
}

/**
 * Decoded attributes: the last payload for each type (the kernel never repeats the ones we read).
 * Only where each payload lies is kept, as one number (offset * 2^16 + length; an attribute's
 * length is 16 bits): a link message carries ~60 attributes and a caller reads a handful, so a
 * Buffer view per attribute was most of the cost of decoding a link event or a dump.
 */
export class Attrs {
  /** Indexed by attribute type (rtnetlink's are small numbers): cheaper than a Map per message. */
  private readonly at: number[] = [];

  constructor(private readonly data: Buffer, offset = 0, end = data.length) {
    let o = offset;
    while (o + 4 <= end) {
      const len = data.readUInt16LE(o);
      const type = data.readUInt16LE(o + 2) & NLA_TYPE_MASK;
      if (len < 4 || o + len > end) break; // malformed tail: stop rather than read garbage
      this.at[type] = (o + 4) * 0x10000 + (len - 4);
      o += align4(len);
    }
  }

  /** Payload offset and length of `type`, or undefined. */
  private span(type: number): [number, number] | undefined {
    const v = this.at[type];
    return v === undefined ? undefined : [Math.floor(v / 0x10000), v % 0x10000];
  }
  /** Offset of a payload of at least `size` bytes, or -1. */
  private field(type: number, size: number): number {
    const v = this.at[type];
    return v !== undefined && v % 0x10000 >= size ? Math.floor(v / 0x10000) : -1;
  }

  has(type: number): boolean {
    return this.at[type] !== undefined;
  }
  buf(type: number): Buffer | undefined {
    const s = this.span(type);
    return s && this.data.subarray(s[0], s[0] + s[1]);
  }
  u8(type: number): number | undefined {
    const o = this.field(type, 1);
    return o < 0 ? undefined : this.data.readUInt8(o);
  }
  u16(type: number): number | undefined {
    const o = this.field(type, 2);
    return o < 0 ? undefined : this.data.readUInt16LE(o);
  }
  be16(type: number): number | undefined {
    const o = this.field(type, 2);
    return o < 0 ? undefined : this.data.readUInt16BE(o);
  }
  u32(type: number): number | undefined {
    const o = this.field(type, 4);
    return o < 0 ? undefined : this.data.readUInt32LE(o);
  }
  i32(type: number): number | undefined {
    const o = this.field(type, 4);
    return o < 0 ? undefined : this.data.readInt32LE(o);
  }
  str(type: number): string | undefined {
    const s = this.span(type);
    if (!s) return undefined;
    const nul = this.data.indexOf(0, s[0]);
    return this.data.toString('utf8', s[0], nul < 0 || nul > s[0] + s[1] ? s[0] + s[1] : nul);
  }
  nested(type: number): Attrs | undefined {
    const s = this.span(type);
    return s && new Attrs(this.data, s[0], s[0] + s[1]);
  }
}
