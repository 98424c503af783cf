// The userland relay for published ports NAT cannot serve (IPv6 loopback, IPv6 in front of an
// IPv4-only container), as dockerd's docker-proxy. TCP connections are carried by the native relay
// thread with splice(2); UDP datagrams through a socket per client flow (native/src/port_relay.h
// says why not Node streams). A relayed client reaches the container from the host's side of the
// route, the bridge's address.

import { KernelError } from './errors.js';
import { isNativeError, native } from './native.js';

export interface RelayTarget {
  ip: string;
  port: number;
}

export interface PortRelay {
  /** Stops listening and cuts what it carries (the mapping is gone). */
  close(): void;
  /** Connections (UDP: client flows) carried now, and since it opened. */
  stats(): { active: number; accepted: number };
}

const bracket = (ip: string): string => (ip.includes(':') ? `[${ip}]` : ip);

/** Listens on ip:port (IPv6 only on "::"); EADDRINUSE or EACCES when something else has it. */
export function openPortRelay(proto: 'tcp' | 'udp', ip: string, port: number, target: RelayTarget): PortRelay {
  try {
    return new (native().PortRelay)(ip, port, target.ip, target.port, proto);
  } catch (e) {
    throw isNativeError(e) ? new KernelError(e.errno, e.syscall, `${bracket(ip)}:${port}/${proto}`) : e;
  }
}
