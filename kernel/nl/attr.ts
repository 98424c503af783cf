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

/** Decoded attributes: the last payload for each type (the kernel never repeats the ones we read). */
export class Attrs {
  private readonly map = new Map<number, Buffer>();

  constructor(buf: Buffer, offset = 0, end = buf.length) {
    let o = offset;
    while (o + 4 <= end) {
      const len = buf.readUInt16LE(o);
      const type = buf.readUInt16LE(o + 2) & NLA_TYPE_MASK;
      if (len < 4 || o + len > end) break; // malformed tail: stop rather than read garbage
      this.map.set(type, buf.subarray(o + 4, o + len));
      o += align4(len);
    }
  }

  has(type: number): boolean {
    return this.map.has(type);
  }
  buf(type: number): Buffer | undefined {
    return this.map.get(type);
  }
  u8(type: number): number | undefined {
    const b = this.map.get(type);
    return b && b.length >= 1 ? b.readUInt8(0) : undefined;
  }
  u16(type: number): number | undefined {
    const b = this.map.get(type);
    return b && b.length >= 2 ? b.readUInt16LE(0) : undefined;
  }
  be16(type: number): number | undefined {
    const b = this.map.get(type);
    return b && b.length >= 2 ? b.readUInt16BE(0) : undefined;
  }
  u32(type: number): number | undefined {
    const b = this.map.get(type);
    return b && b.length >= 4 ? b.readUInt32LE(0) : undefined;
  }
  i32(type: number): number | undefined {
    const b = this.map.get(type);
    return b && b.length >= 4 ? b.readInt32LE(0) : undefined;
  }
  str(type: number): string | undefined {
    const b = this.map.get(type);
    if (!b) return undefined;
    const nul = b.indexOf(0);
    return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
  }
  nested(type: number): Attrs | undefined {
    const b = this.map.get(type);
    return b ? new Attrs(b) : undefined;
  }
}
