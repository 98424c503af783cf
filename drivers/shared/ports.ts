// Published ports: what Docker asks for (a port binding), what we program (a published port),
// and the host-side reservation that makes a taken port an error instead of a silent shadowing.

import { BlockList, SocketAddress, isIP, isIPv6 } from 'node:net';
import { createSocket, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { KernelError, NetError } from '../../kernel/errors.js';
import { holdTcpPort, type HeldPort } from '../../kernel/port-hold.js';
import { openPortRelay, type PortRelay } from '../../kernel/port-relay.js';

export type PortProto = 'tcp' | 'udp' | 'sctp';

/** One binding as the runtime asks for it: hostPort 0 = choose; hostPort..hostPortEnd = any in range. */
export interface PortBindingRequest {
  proto: PortProto;
  containerPort: number;
  hostIp?: string;
  hostPort: number;
  hostPortEnd: number;
}

/** A mapping as programmed: host ports hostPort..hostPortEnd → container ports containerPort..(same length). */
export interface PublishedPort {
  proto: PortProto;
  family: 4 | 6;
  /** '0.0.0.0' / '::' mean every host address. */
  hostIp: string;
  hostPort: number;
  hostPortEnd: number;
  containerIp: string;
  containerPort: number;
}

export const PROTO_BY_NUMBER: Record<number, PortProto> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

/**
 * An address in its one spelling ("0:0::0" is "::", "2001:DB8:0::1" is "2001:db8::1"), or
 * undefined when it is not an address. Host addresses are compared as strings from here on (the
 * wildcard, holds, rules), so both front-ends store them this way.
 */
export function canonicalIp(ip: string): string | undefined {
  const family = isIP(ip);
  return family ? new SocketAddress({ address: ip, family: family === 4 ? 'ipv4' : 'ipv6' }).address : undefined;
}

/** Whether a canonical host address (canonicalIp) is a wildcard. */
export const isAnyAddress = (ip: string): boolean => ip === '0.0.0.0' || ip === '::';

const loopback6 = new BlockList();
loopback6.addAddress('::1', 'ipv6');

/** ::1 however it is written (0::1, 0:0:0:0:0:0:0:1, …). */
export const isLoopback6 = (ip: string): boolean => isIPv6(ip) && loopback6.check(ip, 'ipv6');

/** Whether the relay can carry a protocol at all (Node and the relay have no SCTP). */
export const relayable = (proto: PortProto): boolean => proto !== 'sctp';

/**
 * Whether the kernel's DNAT rules carry this mapping: not on IPv6 loopback (the kernel will not
 * NAT ::1 off the host), nor when the host side is IPv6 and the container's address IPv4; only
 * the userland relay serves those.
 */
export const natForwarded = (p: Pick<PublishedPort, 'family' | 'hostIp' | 'containerIp'>): boolean =>
  p.containerIp.includes(':') === (p.family === 6) && !isLoopback6(p.hostIp);

/**
 * Whether a mapping needs the userland relay on its host port: IPv6 loopback, which no rule can
 * forward (on "::" too, which takes ::1), and a family the rules cannot cross. Not SCTP.
 */
export const needsRelay = (p: Pick<PublishedPort, 'proto' | 'family' | 'hostIp' | 'containerIp'>): boolean =>
  relayable(p.proto) && p.family === 6 && (p.hostIp === '::' || isLoopback6(p.hostIp) || !natForwarded(p));

const validPort = (p: unknown): p is number => Number.isInteger(p) && (p as number) >= 0 && (p as number) <= 65535;

/** Parses Docker's com.docker.network.portmap entries. */
export function parseDockerPortmap(raw: unknown): PortBindingRequest[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new NetError('INVALID_ARGUMENT', 'com.docker.network.portmap must be an array');
  return raw.map((b: Record<string, unknown>, i) => {
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw new NetError('INVALID_ARGUMENT', `com.docker.network.portmap[${i}] must be an object`);
    const proto = PROTO_BY_NUMBER[b.Proto as number];
    if (!proto) throw new NetError('INVALID_ARGUMENT', `unsupported port protocol ${JSON.stringify(b.Proto)} (tcp, udp and sctp are)`);
    if (!validPort(b.Port) || b.Port === 0) throw new NetError('INVALID_ARGUMENT', `bad container port ${JSON.stringify(b.Port)}`);
    const hostPort = (b.HostPort ?? 0) as number;
    const hostPortEnd = (b.HostPortEnd ?? hostPort) as number;
    if (!validPort(hostPort) || !validPort(hostPortEnd) || (hostPort !== 0 && hostPortEnd < hostPort)) {
      throw new NetError('INVALID_ARGUMENT', `bad host port range ${hostPort}-${hostPortEnd}`);
    }
    const given = typeof b.HostIP === 'string' && b.HostIP !== '' ? b.HostIP : undefined;
    // The address goes into iptables rules: it must be an address and nothing else.
    if (b.HostIP !== undefined && b.HostIP !== null && typeof b.HostIP !== 'string') throw new NetError('INVALID_ARGUMENT', 'HostIP must be a string');
    const hostIp = given === undefined ? undefined : canonicalIp(given);
    if (given !== undefined && !hostIp) throw new NetError('INVALID_ARGUMENT', `HostIP ${JSON.stringify(given.slice(0, 80))} is not an IP address`);
    return { proto, containerPort: b.Port as number, hostPort, hostPortEnd: hostPortEnd || hostPort, ...(hostIp ? { hostIp } : {}) };
  });
}

/** Merges consecutive single-port mappings (what the CLI makes of -p 9000-9010:9000-9010) into ranges: one rule each. */
export function coalesce(ports: readonly PublishedPort[]): PublishedPort[] {
  const sorted = [...ports].sort((a, b) =>
    a.proto.localeCompare(b.proto) || a.hostIp.localeCompare(b.hostIp) || a.containerIp.localeCompare(b.containerIp) || a.hostPort - b.hostPort,
  );
  const out: PublishedPort[] = [];
  for (const p of sorted) {
    const last = out.at(-1);
    if (
      last && last.proto === p.proto && last.hostIp === p.hostIp && last.containerIp === p.containerIp && last.family === p.family &&
      p.hostPort === last.hostPortEnd + 1 && p.containerPort - p.hostPort === last.containerPort - last.hostPort
    ) {
      last.hostPortEnd = p.hostPortEnd;
    } else {
      out.push({ ...p });
    }
  }
  return out;
}

async function ephemeralRange(): Promise<[number, number]> {
  const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '49153 65535');
  const [lo, hi] = text.trim().split(/\s+/).map(Number) as [number, number];
  return [lo || 49153, hi || 65535];
}

type Holder = HeldPort | Socket | PortRelay;

/** A mapping to reserve; the container side tells a relay where to go. */
export type PortToReserve = Pick<PublishedPort, 'proto' | 'hostIp' | 'hostPort' | 'hostPortEnd'> & Partial<Pick<PublishedPort, 'family' | 'containerIp' | 'containerPort'>>;

/**
 * Holds host ports, as Docker does, so a port already used by a host process or another container
 * is refused up front. A TCP port is held by a socket bound but not listening (kernel/port-hold.ts
 * says why); a UDP port by a bound socket, which sees nothing the NAT rules redirect. With
 * `relay` (a long-lived daemon), a port that needsRelay is held by the relay instead.
 */
export class PortReserver {
  private readonly held = new Map<string, Holder>();

  constructor(readonly relay = false) {}

  private static key(proto: PortProto, ip: string, port: number): string {
    return `${proto}/${ip}/${port}`;
  }

  private async bindOne(proto: PortProto, ip: string, port: number, p: PortToReserve): Promise<Holder | undefined> {
    if (proto === 'sctp') return undefined; // Node has no SCTP sockets; the rules alone publish it.
    const refused = (code: string | undefined, message: string): NetError =>
      code === 'EADDRINUSE' || code === 'EACCES'
        ? new NetError('PORT_IN_USE', `host port ${ip.includes(':') ? `[${ip}]` : ip}:${port}/${proto} is already in use`)
        : new NetError('INVALID_ARGUMENT', `cannot bind host port ${ip}:${port}/${proto}: ${message}`);
    if (this.relay && p.containerIp && p.containerPort && p.family && needsRelay({ proto, family: p.family, hostIp: ip, containerIp: p.containerIp })) {
      try {
        return openPortRelay(proto, ip, port, { ip: p.containerIp, port: p.containerPort + (port - p.hostPort) });
      } catch (e) {
        throw refused(e instanceof KernelError ? e.code : undefined, (e as Error).message);
      }
    }
    if (proto === 'tcp') {
      try {
        return holdTcpPort(ip, port);
      } catch (e) {
        throw refused(e instanceof KernelError ? e.code : undefined, (e as Error).message);
      }
    }
    const v6 = ip.includes(':');
    return new Promise((resolve, reject) => {
      const sock = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
      sock.once('error', (e: NodeJS.ErrnoException) => reject(refused(e.code, e.message)));
      sock.bind({ address: ip, port, exclusive: true }, () => {
        sock.removeAllListeners('error');
        sock.on('error', () => undefined); // a late error on a held port must not end the daemon
        sock.unref();
        resolve(sock);
      });
    });
  }

  /** Reserves every port of the mapping, all or nothing. */
  async reserve(p: PortToReserve): Promise<void> {
    const got: string[] = [];
    try {
      for (let port = p.hostPort; port <= p.hostPortEnd; port++) {
        const key = PortReserver.key(p.proto, p.hostIp, port);
        if (this.held.has(key)) throw new NetError('PORT_IN_USE', `host port ${p.hostIp}:${port}/${p.proto} is already published`);
        const h = await this.bindOne(p.proto, p.hostIp, port, p);
        if (h) this.held.set(key, h);
        got.push(key);
      }
    } catch (e) {
      for (const k of got) this.closeKey(k);
      throw e;
    }
  }

  release(p: Pick<PublishedPort, 'proto' | 'hostIp' | 'hostPort' | 'hostPortEnd'>): void {
    for (let port = p.hostPort; port <= p.hostPortEnd; port++) this.closeKey(PortReserver.key(p.proto, p.hostIp, port));
  }

  private closeKey(key: string): void {
    const h = this.held.get(key);
    if (!h) return;
    this.held.delete(key);
    h.close();
  }

  /** Picks a free host port: in [from, to] when given (a -p range), else from the ephemeral range. */
  async choose(p: Omit<PortToReserve, 'hostPort' | 'hostPortEnd'>, from?: number, to?: number): Promise<number> {
    const { proto, hostIp: ip } = p;
    const [lo, hi] = from ? [from, to ?? from] : await ephemeralRange();
    // Start at a random point so two daemons (or a restart) rarely race for the same port.
    const span = hi - lo + 1;
    const start = from ? 0 : Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const port = lo + ((start + i) % span);
      try {
        await this.reserve({ ...p, hostPort: port, hostPortEnd: port });
        return port;
      } catch (e) {
        if ((e as NetError).netCode !== 'PORT_IN_USE') throw e;
      }
    }
    throw new NetError('PORT_IN_USE', from ? `no free host port in ${lo}-${hi}/${proto}` : `no free ephemeral host port for ${proto}`);
  }

  closeAll(): void {
    for (const k of [...this.held.keys()]) this.closeKey(k);
  }
}
