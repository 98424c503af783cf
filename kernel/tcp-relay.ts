// The userland TCP relay for published ports NAT cannot serve (IPv6 loopback, IPv6 in front of an
// IPv4-only container), as dockerd's docker-proxy: a listening socket whose connections the
// native relay thread carries to the container with splice(2) (native/src/tcp_relay.h says why
// not Node streams). A relayed client reaches the container from the host's side of the route,
// the bridge's address.

import { KernelError } from './errors.js';
import { isNativeError, native } from './native.js';

export interface RelayTarget {
  ip: string;
  port: number;
}

export interface TcpRelay {
  /** Stops listening and cuts the connections it carries (the mapping is gone). */
  close(): void;
  /** Connections carried now, and accepted since it opened. */
  stats(): { active: number; accepted: number };
}

const bracket = (ip: string): string => (ip.includes(':') ? `[${ip}]` : ip);

/** Listens on ip:port (IPv6 only on "::"); EADDRINUSE or EACCES when something else has it. */
export function openTcpRelay(ip: string, port: number, target: RelayTarget): TcpRelay {
  try {
    return new (native().TcpRelay)(ip, port, target.ip, target.port);
  } catch (e) {
    throw isNativeError(e) ? new KernelError(e.errno, e.syscall, `${bracket(ip)}:${port}/tcp`) : e;
  }
}
