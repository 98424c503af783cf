// Keeps the resolver in step with networks and endpoints: listeners follow networks, records
// follow joins, names and deletes. At start the records are restored from the store before any
// listener answers.

import { Forwarder } from '../dns/forward.js';
import { RecordBook } from '../dns/records.js';
import { DnsServer, type DnsOutcome } from '../dns/server.js';
import type { Logger } from '../drivers/driver.js';
import { hasGatewayBridge, type EndpointRecord, type NetworkObserver, type NetworkRecord } from './network-service.js';

export interface DnsOptions {
  port?: number;
  upstreams?: string[];
  domain?: string;
  log: Logger;
  observe?: (seconds: number, outcome: DnsOutcome) => void;
}

const plain = (cidr: string): string => cidr.split('/')[0]!;

/** What the resolver knows of a joined endpoint (also used to answer with the daemon down). */
export function endpointNames(ep: EndpointRecord): { names: string[]; ipv4?: string; ipv6?: string } {
  return {
    names: ep.names ?? [],
    ...(ep.spec.address4 ? { ipv4: plain(ep.spec.address4) } : {}),
    ...(ep.spec.address6 ? { ipv6: plain(ep.spec.address6) } : {}),
  };
}

export class DnsService implements NetworkObserver {
  readonly records: RecordBook;
  readonly forwarder: Forwarder;
  readonly server: DnsServer;
  /** Record keys of remote (other hosts') endpoints per network. */
  private readonly remote = new Map<string, Set<string>>();

  constructor(opts: DnsOptions) {
    this.records = new RecordBook(opts.domain);
    this.forwarder = new Forwarder(opts.upstreams?.length ? { servers: opts.upstreams } : {});
    this.server = new DnsServer({
      records: this.records,
      forwarder: this.forwarder,
      ...(opts.port !== undefined ? { port: opts.port } : {}),
      log: (level, msg, fields) => opts.log[level](fields ?? {}, msg),
      ...(opts.observe ? { observe: opts.observe } : {}),
    });
  }

  get domain(): string {
    return this.records.domain;
  }

  /** Records first, then listeners: a restarted daemon answers the same from its first packet. */
  async restore(nets: NetworkRecord[], eps: EndpointRecord[]): Promise<void> {
    for (const ep of eps) this.endpointChanged(ep);
    for (const n of nets) await this.networkAdded(n);
  }

  async networkAdded(n: NetworkRecord): Promise<void> {
    if (!hasGatewayBridge(n)) return; // no gateway address to listen on
    await this.server.addNetwork({
      id: n.id,
      listen: n.state.gateways.map(plain),
      subnets: [...n.state.subnets4, ...n.state.subnets6],
      internal: n.state.internal,
    });
  }

  async networkRemoved(id: string): Promise<void> {
    await this.server.removeNetwork(id);
    this.records.removeNetwork(id);
  }

  endpointChanged(ep: EndpointRecord): void {
    if (!ep.joined) {
      this.records.removeEndpoint(ep.networkId, ep.id);
      return;
    }
    this.records.setEndpoint(ep.networkId, ep.id, endpointNames(ep));
  }

  /** Endpoints of the same overlay network on other hosts (tsoverlay's peer sync reports them). */
  setRemoteEndpoints(networkId: string, remote: ReadonlyArray<{ id: string; names: string[]; ip4?: string; ip6?: string }>): void {
    const before = this.remote.get(networkId) ?? new Set<string>();
    const now = new Set<string>();
    for (const e of remote) {
      const key = `remote:${e.id}`;
      now.add(key);
      this.records.setEndpoint(networkId, key, { names: e.names, ...(e.ip4 ? { ipv4: e.ip4 } : {}), ...(e.ip6 ? { ipv6: e.ip6 } : {}) });
    }
    for (const key of before) if (!now.has(key)) this.records.removeEndpoint(networkId, key);
    if (now.size) this.remote.set(networkId, now);
    else this.remote.delete(networkId);
  }

  endpointRemoved(networkId: string, id: string): void {
    this.records.removeEndpoint(networkId, id);
  }

  async close(): Promise<void> {
    await this.server.close();
    this.forwarder.close();
  }
}
