// A userland relay for published TCP ports the kernel's NAT cannot serve, as Docker's
// docker-proxy does (userland-proxy, on by default in dockerd): IPv6 loopback (the kernel will
// not NAT ::1 off the host) and IPv6 host addresses in front of a container that has only IPv4.
// Everything the DNAT rules redirect never reaches the listening socket; the relay sees only the
// rest. A relayed client shows up in the container with the bridge's address, as with Docker.

import { connect, createServer, type Server, type Socket } from 'node:net';

export interface RelayTarget {
  ip: string;
  port: number;
}

export class TcpRelay {
  private readonly conns = new Set<Socket>();
  private closed = false;

  private constructor(private readonly server: Server) {}

  /** Listens on ip:port (IPv6 only on "::") and relays each connection to target. */
  static listen(ip: string, port: number, target: RelayTarget): Promise<TcpRelay> {
    return new Promise((resolve, reject) => {
      let relay: TcpRelay | undefined;
      // allowHalfOpen on both sides: a client that shuts down its sending side (an HTTP/1.0
      // request, nc -q) still gets the whole answer.
      const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => relay?.accept(client, target));
      relay = new TcpRelay(server);
      server.once('error', reject);
      server.listen({ host: ip, port, ipv6Only: ip === '::', backlog: 511 }, () => {
        server.removeListener('error', reject);
        server.on('error', () => undefined); // a late error on a listening socket must not end the daemon
        server.unref();
        resolve(relay!);
      });
    });
  }

  private accept(client: Socket, target: RelayTarget): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    client.pause(); // nothing is read before the container end exists
    const upstream = connect({ host: target.ip, port: target.port, allowHalfOpen: true, noDelay: true });
    this.conns.add(client);
    this.conns.add(upstream);
    // Either end failing (the container refuses, resets, is gone) ends both: the client sees
    // a reset, not a connection that hangs.
    const fail = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
    client.on('close', () => {
      this.conns.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      this.conns.delete(upstream);
      // Let what the container sent drain to the client before closing it.
      if (!client.destroyed) client.end();
    });
    upstream.once('connect', () => {
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  }

  /** Stops listening and cuts the relayed connections (the mapping is gone). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
  }
}
