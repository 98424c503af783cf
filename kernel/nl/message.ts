// Netlink message framing: the 16-byte nlmsghdr, request assembly, and reply parsing including
// NLMSG_ERROR with extended ack (the kernel's own error text).

import { Attrs, type Attr, encodeAttrs } from './attr.js';
import { NLM_F, NLMSG, NLMSGERR_ATTR } from './constants.js';

export const NLMSG_HDRLEN = 16;

export interface Request {
  type: number;
  flags: number;
  /** The fixed family header (ifinfomsg, ifaddrmsg, rtmsg, ndmsg). */
  header: Buffer;
  attrs: readonly Attr[];
}

export function encodeRequest(req: Request, seq: number, portId = 0): Buffer {
  const body = encodeAttrs(req.attrs);
  const len = NLMSG_HDRLEN + req.header.length + body.length;
  const buf = Buffer.alloc(len);
  buf.writeUInt32LE(len, 0);
  buf.writeUInt16LE(req.type, 4);
  buf.writeUInt16LE(req.flags | NLM_F.REQUEST, 6);
  buf.writeUInt32LE(seq >>> 0, 8);
  buf.writeUInt32LE(portId >>> 0, 12);
  req.header.copy(buf, NLMSG_HDRLEN);
  body.copy(buf, NLMSG_HDRLEN + req.header.length);
  return buf;
}

export interface ReplyMessage {
  type: number;
  flags: number;
  seq: number;
  /** Payload after the nlmsghdr. */
  payload: Buffer;
}

export function splitMessages(buf: Buffer): ReplyMessage[] {
  const out: ReplyMessage[] = [];
  let o = 0;
  while (o + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(o);
    if (len < NLMSG_HDRLEN || o + len > buf.length) throw new Error(`malformed netlink message at offset ${o}`);
    out.push({
      type: buf.readUInt16LE(o + 4),
      flags: buf.readUInt16LE(o + 6),
      seq: buf.readUInt32LE(o + 8),
      payload: buf.subarray(o + NLMSG_HDRLEN, o + len),
    });
    o += (len + 3) & ~3;
  }
  return out;
}

export interface NetlinkStatus {
  /** Positive errno, 0 for an ack. */
  errno: number;
  extack?: string;
}

/** Decodes an NLMSG_ERROR payload: int error, the original header (and, uncapped, its payload), TLVs. */
export function decodeError(msg: ReplyMessage): NetlinkStatus {
  const p = msg.payload;
  const errno = -p.readInt32LE(0);
  let extack: string | undefined;
  if (msg.flags & NLM_F.ACK_TLVS) {
    const origLen = p.length >= 4 + NLMSG_HDRLEN ? p.readUInt32LE(4) : 0;
    const tlvStart = 4 + (msg.flags & NLM_F.CAPPED ? NLMSG_HDRLEN : origLen);
    extack = new Attrs(p, tlvStart).str(NLMSGERR_ATTR.MSG);
  }
  return { errno, ...(extack ? { extack } : {}) };
}

export interface ParsedReply {
  messages: ReplyMessage[];
  status: NetlinkStatus;
  interrupted: boolean;
}

/** Separates data messages from the terminating ack/done and reports dump interruption. */
export function parseReply(buf: Buffer): ParsedReply {
  const messages: ReplyMessage[] = [];
  let status: NetlinkStatus = { errno: 0 };
  let interrupted = false;
  for (const m of splitMessages(buf)) {
    if (m.flags & NLM_F.DUMP_INTR) interrupted = true;
    if (m.type === NLMSG.ERROR) status = decodeError(m);
    else if (m.type === NLMSG.DONE) {
      // A dump that failed part-way reports its error as the int in NLMSG_DONE.
      if (m.payload.length >= 4 && m.payload.readInt32LE(0) < 0) status = { errno: -m.payload.readInt32LE(0) };
    } else if (m.type !== NLMSG.NOOP) messages.push(m);
  }
  return { messages, status, interrupted };
}
