// A UDP listener whose datagrams a native thread reads in batches, answering the ones found in a
// table of ready replies and handing the rest to a JavaScript callback. The resolver uses it for
// its per-network listeners: names of local containers are answered without a trip through the
// event loop, and everything else (forwarding, refusals, errors) stays in dns/server.ts.

import { KernelError } from './errors.js';
import { isNativeError, native, type NativeUdpResponder } from './native.js';
import { ipToBytes, parseCidr } from './nl/ip.js';

export interface UdpResponderStats {
  /** Replies sent from the table. */
  answered: number;
  /** Datagrams handed to the callback. */
  handedOver: number;
  /** Datagrams dropped: too big, or the callback was too far behind (bounded queue). */
  dropped: number;
}


export class UdpResponder {
  private readonly sock: NativeUdpResponder;
  private closed = false;

  /** Binds address:port in the calling process's namespace; throws a KernelError on failure. */
  constructor(address: string, port: number, onQuery: (msg: Buffer, address: string, port: number) => void) {
    try {
      this.sock = new (native().UdpResponder)(address, port, onQuery);
    } catch (e) {
      if (isNativeError(e)) throw new KernelError(e.errno, e.syscall, `${address}:${port}`);
      throw e;
    }
  }

  /** Sends a datagram from the listener's address (best effort, as UDP). */
  send(buf: Buffer, address: string, port: number): void {
    if (!this.closed) this.sock.send(buf, address, port);
  }

  /**
   * Sets the reply records for one question key (see questionKey); an empty list removes it.
   * Each record is the wire form after the owner name: type, class, TTL, length, data.
   */
  setAnswer(key: Buffer, records: Buffer[]): void {
    if (!this.closed) this.sock.setAnswer(key, records);
  }

  /** Client subnets ("ip/len"): queries from elsewhere never hit the table (the callback decides, and refuses). */
  setClients(subnets: readonly string[]): void {
    if (this.closed) return;
    this.sock.setClients(subnets.map((cidr) => {
      const { ip, prefixLen } = parseCidr(cidr);
      return { address: ipToBytes(ip), bits: prefixLen };
    }));
  }

  get port(): number {
    return this.sock.localPort() ?? 0;
  }

  stats(): UdpResponderStats {
    return this.sock.stats();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }
}
