// Where the daemon listens, as the CLI needs it before (or without) loading the servers: fastify
// is not loaded by `tsnet` commands that only talk to the daemon.

import { isIP } from 'node:net';

export const DEFAULT_API_SOCKET = '/run/tsnet/api.sock';

/** "127.0.0.1:9323" or "[::1]:9323"; anything but a loopback address is refused. */
export function parseMetricsAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !isIP(host) || !(port > 0 && port < 65536)) throw new Error(`--metrics-addr must be IP:PORT (got ${JSON.stringify(addr)})`);
  const loopback = isIP(host) === 4 ? host.startsWith('127.') : host === '::1';
  if (!loopback) throw new Error(`--metrics-addr must be a loopback address (127.0.0.0/8 or ::1): metrics are not for the network (got ${host})`);
  return { host, port };
}
