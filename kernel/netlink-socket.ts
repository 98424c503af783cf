// One netlink socket bound to a namespace, and its request/reply exchanges: what every netlink
// family tsnet speaks shares (rtnetlink in netlink.ts, ctnetlink in firewall/conntrack.ts). The
// socket belongs to a native lane, a thread of its own that runs exchanges one at a time in the
// order they were asked for.

import { KernelError } from './errors.js';
import { isNativeError, native, type NativeNetlinkLane } from './native.js';
import type { Attr } from './nl/attr.js';
import { NLM_F } from './nl/constants.js';
import { encodeRequest, parseReply, type ReplyMessage } from './nl/message.js';
import type { NetnsRef } from './types.js';

const DUMP_RETRIES = 10;

export class NetlinkSocket implements AsyncDisposable {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  /** Exchanges handed out and not yet settled, and who waits for them all (close). */
  private outstanding = 0;
  private drained: (() => void) | undefined;
  private closed = false;

  protected constructor(
    readonly netns: NetnsRef | undefined,
    protected readonly lane: NativeNetlinkLane,
    private readonly portId: number,
    /** The name of a message type, for errors ("RTM_NEWLINK"). */
    private readonly opName: (type: number) => string,
  ) {}

  /** A socket of `protocol` in `ns` (the calling process's own namespace when omitted), on its own lane. */
  protected static async openLane(ns: NetnsRef | undefined, protocol: number): Promise<{ lane: NativeNetlinkLane; portId: number }> {
    let opened: { fd: number; portId: number };
    try {
      opened = await native().openNetlink(ns?.path ?? null, protocol);
    } catch (e) {
      throw isNativeError(e) ? new KernelError(e.errno, e.syscall, ns?.path ?? 'host netns') : e;
    }
    try {
      // The socket's own thread; from here on the lane owns (and closes) the socket.
      return { lane: new (native().NetlinkLane)(opened.fd, opened.portId, ns?.path ?? null), portId: opened.portId };
    } catch (e) {
      native().closeFd(opened.fd);
      throw e;
    }
  }

  get namespaceLabel(): string {
    return this.netns?.path ?? 'host';
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.outstanding > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    this.lane.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * One exchange: send, collect replies, raise the kernel's error.
   *
   * Exchanges are handed to the lane as they are asked for, not after the previous one settled:
   * the lane runs them one at a time in that order, back to back, so requests a caller issues
   * together (or that concurrent operations issue on a shared handle) cost one hand-off between
   * threads, not one each. Order and outcome are as if each waited for the one before: every
   * request runs whether or not an earlier one failed, as before.
   *
   * `brief`: the kernel answers this request at once, without waiting for an RCU grace period
   * (creating a link, an address, a route, a link going up; not a deletion, a move to another
   * namespace, a link going down or leaving a bridge). Such a request runs on this thread, with no
   * hand-off, when no lane in the process is at work (native/src/netlink_lane.h says why).
   */
  protected exchange(type: number, flags: number, header: Buffer, attrs: readonly Attr[], target: string, brief = false): Promise<ReplyMessage[]> {
    const op = this.opName(type);
    const isDump = (flags & NLM_F.DUMP) === NLM_F.DUMP;
    // Every non-dump request asks for an ack, so the native side always sees a terminator (a
    // plain GET is otherwise answered by one message with nothing after it).
    const wireFlags = isDump ? flags : flags | NLM_F.ACK;
    const send = async (attempt: number): Promise<ReplyMessage[]> => {
      this.seq = (this.seq + 1) >>> 0;
      const seq = this.seq;
      let raw: Buffer;
      try {
        const request = encodeRequest({ type, flags: wireFlags, header, attrs }, seq, this.portId);
        raw = (brief && !isDump ? this.lane.transactNow(seq, request) : undefined) ?? await this.lane.transact(seq, request);
      } catch (e) {
        throw isNativeError(e) ? new KernelError(e.errno, op, target) : e;
      }
      const reply = parseReply(raw);
      if (reply.status.errno !== 0) throw new KernelError(reply.status.errno, op, target, reply.status.extack);
      // A dump that raced with a change is inconsistent; ask again (netlinksafe's lesson).
      if (reply.interrupted && isDump && attempt < DUMP_RETRIES && !this.closed) return send(attempt + 1);
      return reply.messages;
    };
    return this.submit(() => send(0));
  }

  /** Hands work to the lane unless the socket is closed; close() waits for it (retried dumps included). */
  protected submit<T>(start: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('netlink handle is closed'));
    const p = start();
    this.outstanding++;
    const settled = (): void => {
      if (--this.outstanding === 0) this.drained?.();
    };
    p.then(settled, settled);
    return p;
  }
}
