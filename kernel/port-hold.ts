// Holding a host TCP port for a published mapping without listening on it. Traffic to the port is
// redirected by NAT rules before any socket sees it; the hold only keeps other programs off the
// port. Not listening matters where no rule can redirect (IPv6 loopback: the kernel will not NAT
// ::1 off the host): a client there is refused at once and falls back to 127.0.0.1, where a
// listening socket nobody accepts from would leave it hanging (native addon, reserveTcpPort).

import { KernelError } from './errors.js';
import { isNativeError, native } from './native.js';

export interface HeldPort {
  close(): void;
}

/** Holds ip:port (TCP) until close(); EADDRINUSE or EACCES when something else has it. */
export function holdTcpPort(ip: string, port: number): HeldPort {
  let fd: number;
  try {
    fd = native().reserveTcpPort(ip, port);
  } catch (e) {
    throw isNativeError(e) ? new KernelError(e.errno, e.syscall, `${ip.includes(':') ? `[${ip}]` : ip}:${port}/tcp`) : e;
  }
  let open = true;
  return {
    close: () => {
      if (!open) return;
      open = false;
      native().closeFd(fd);
    },
  };
}
