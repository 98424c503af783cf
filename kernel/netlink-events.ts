// Link and address events of one namespace (RTMGRP_LINK and the IPv4/IPv6 address groups), as the
// kernel announces them. The reconciler listens so that a deleted bridge, a veth pulled out of its
// bridge or a removed gateway address is repaired within moments, not at the next periodic pass.

import { KernelError } from './errors.js';
import { isNativeError, native, type NativeNetlinkWatch } from './native.js';
import { parseAddr } from './nl/addr.js';
import { AF, RTM } from './nl/constants.js';
import { parseLink } from './nl/link.js';
import { splitMessages } from './nl/message.js';
import type { Address, Link, NetnsRef } from './types.js';

const RTMGRP_LINK = 0x1;
const RTMGRP_IPV4_IFADDR = 0x10;
const RTMGRP_IPV6_IFADDR = 0x100;

export type NetlinkEvent =
  | { type: 'link-new' | 'link-del'; link: Link; /** AF_BRIDGE notifications describe a bridge port. */ bridgePort: boolean }
  | { type: 'addr-new' | 'addr-del'; addr: Address }
  /** The kernel dropped events (buffer overrun): whoever listens must re-read the whole state. */
  | { type: 'overrun' };

/** Decodes one datagram of notifications; undefined when it cannot be read (treat as overrun). */
export function decodeEvents(buf: Buffer): NetlinkEvent[] | undefined {
  try {
    const out: NetlinkEvent[] = [];
    for (const m of splitMessages(buf)) {
      if (m.type === RTM.NEWLINK || m.type === RTM.DELLINK) {
        out.push({ type: m.type === RTM.NEWLINK ? 'link-new' : 'link-del', link: parseLink(m.payload), bridgePort: m.payload[0] === AF.BRIDGE });
      } else if (m.type === RTM.NEWADDR || m.type === RTM.DELADDR) {
        out.push({ type: m.type === RTM.NEWADDR ? 'addr-new' : 'addr-del', addr: parseAddr(m.payload) });
      }
    }
    return out;
  } catch {
    return undefined;
  }
}

export class NetlinkEvents {
  private watch: NativeNetlinkWatch | undefined;
  private closed = false;

  private constructor() {}

  /** Subscribes to link and address events of `ns` (the daemon's own namespace when omitted). */
  static open(ns: NetnsRef | undefined, onEvent: (e: NetlinkEvent) => void): NetlinkEvents {
    const self = new NetlinkEvents();
    const onData = (buf: Buffer | null): void => {
      // Datagrams the reader thread queued just before close() still arrive: nothing after close.
      if (self.closed) return;
      const events = buf ? decodeEvents(buf) : undefined;
      if (!events) return onEvent({ type: 'overrun' });
      for (const e of events) onEvent(e);
    };
    try {
      self.watch = new (native().NetlinkWatch)(ns?.path ?? null, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, onData);
      return self;
    } catch (e) {
      throw isNativeError(e) ? new KernelError(e.errno, `netlink events: ${e.syscall}`, ns?.path ?? 'host netns') : e;
    }
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
  }
}
