// Prometheus metrics (prom-client). Calls and DNS queries are counted as they happen; everything
// that already has a source of truth (the store, the resolver's counters, the reconciler's tallies,
// the kernel's link counters) is read at scrape time, so the metrics can never drift from it.
// Exposed only on the root-only control socket, or on a loopback TCP address if asked.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DnsOutcome } from '../dns/server.js';
import type { Inventory } from './inventory.js';
import { poolRows } from './inventory.js';
import type { Link } from '../kernel/types.js';

/** What the protocol front-ends report about each call. */
export interface CallObserver {
  call(front: 'cnm' | 'cni', call: string, seconds: number, errorCode?: string): void;
}

export interface MetricSources {
  inventory(): Promise<Inventory>;
  dnsStats(): { cacheHits: number; cacheMisses: number; upstreamFailures: number; cacheSize: number;
    /** What the native UDP responder did without JS: local names answered, datagrams dropped. */
    native: { answered: number; dropped: number };
  };
  repairs(): ReadonlyMap<string, number>;
  /** Links of the namespaces that hold the endpoints' bridge ends (host, overlay namespaces), with counters. */
  links(): Promise<Link[]>;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const DNS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** `read` at most once per scrape: the collectors of one scrape run together and share the result. */
function perScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => (pending ??= read().finally(() => setImmediate(() => (pending = undefined))));
}

/** A counter whose value is read from elsewhere at scrape time. */
function mirroredCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => Promise<Array<[Record<string, string>, number]>> | Array<[Record<string, string>, number]>): void {
  new Counter({
    name, help, labelNames, registers: [registry],
    async collect() {
      this.reset();
      for (const [labels, v] of await read()) if (v > 0) this.inc(labels, v);
    },
  });
}

export class Metrics implements CallObserver {
  readonly registry = new Registry();
  private readonly calls: Counter;
  private readonly callSeconds: Histogram;
  private readonly errors: Counter;
  private readonly dnsQueries: Counter;
  private readonly dnsSeconds: Histogram;

  constructor(sources: MetricSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'tsnet_process_' });
    this.calls = new Counter({ name: 'tsnet_protocol_calls_total', help: 'Protocol calls answered, by front-end and call', labelNames: ['front', 'call'], registers: [r] });
    this.callSeconds = new Histogram({ name: 'tsnet_protocol_call_seconds', help: 'Time to answer a protocol call', labelNames: ['front', 'call'], buckets: LATENCY_BUCKETS, registers: [r] });
    this.errors = new Counter({ name: 'tsnet_protocol_errors_total', help: 'Protocol calls that failed, by error code', labelNames: ['front', 'call', 'code'], registers: [r] });
    // What the native responder answers (local names) or drops never passes through dns(); it
    // is added to the "local" and "dropped" counts at scrape time (with no latency sample).
    const counted = { answered: 0, dropped: 0 };
    this.dnsQueries = new Counter({
      name: 'tsnet_dns_queries_total', help: 'DNS queries, by how they were answered', labelNames: ['outcome'], registers: [r],
      collect() {
        const now = sources.dnsStats().native;
        if (now.answered > counted.answered) this.inc({ outcome: 'local' }, now.answered - counted.answered);
        if (now.dropped > counted.dropped) this.inc({ outcome: 'dropped' }, now.dropped - counted.dropped);
        Object.assign(counted, now);
      },
    });
    this.dnsSeconds = new Histogram({ name: 'tsnet_dns_query_seconds', help: 'Time to answer a DNS query', labelNames: ['outcome'], buckets: DNS_BUCKETS, registers: [r] });

    // One inventory read per scrape, shared by the collectors below.
    const inv = perScrape(() => sources.inventory());
    new Gauge({
      name: 'tsnet_networks', help: 'Networks, by driver', labelNames: ['driver'], registers: [r],
      async collect() {
        this.reset();
        for (const n of (await inv()).networks) this.inc({ driver: n.driver });
      },
    });
    new Gauge({
      name: 'tsnet_endpoints', help: 'Endpoints, by network', labelNames: ['network'], registers: [r],
      async collect() {
        this.reset();
        const i = await inv();
        for (const n of i.networks) this.set({ network: n.id.slice(0, 12) }, i.endpoints.filter((e) => e.networkId === n.id).length);
      },
    });
    new Gauge({
      name: 'tsnet_ipam_pool_addresses', help: 'IPAM pool addresses in use, and usable in all', labelNames: ['pool', 'subnet', 'state'], registers: [r],
      async collect() {
        this.reset();
        for (const p of poolRows(await inv())) {
          this.set({ pool: p.id, subnet: p.subnet, state: 'used' }, p.used);
          this.set({ pool: p.id, subnet: p.subnet, state: 'size' }, Number(p.size));
        }
      },
    });
    mirroredCounter(r, 'tsnet_dns_cache_hits_total', 'Forwarded names answered from the cache', [], () => [[{}, sources.dnsStats().cacheHits]]);
    mirroredCounter(r, 'tsnet_dns_cache_misses_total', 'Forwarded names not in the cache', [], () => [[{}, sources.dnsStats().cacheMisses]]);
    mirroredCounter(r, 'tsnet_dns_upstream_failures_total', 'Upstream resolutions that failed (answered SERVFAIL)', [], () => [[{}, sources.dnsStats().upstreamFailures]]);
    new Gauge({
      name: 'tsnet_dns_cache_entries', help: 'Entries in the DNS cache', registers: [r],
      collect() {
        this.set(sources.dnsStats().cacheSize);
      },
    });
    mirroredCounter(r, 'tsnet_reconcile_repairs_total', 'Drift repaired by the reconciler, by kind', ['what'], () => [...sources.repairs()].map(([what, n]) => [{ what }, n]));

    // Per endpoint, from the container's point of view: what the bridge end sends, it receives.
    // One link dump per scrape for the four per-endpoint counters.
    const endpointLinks = perScrape(async (): Promise<Array<{ labels: Record<string, string>; link: Link }>> => {
      const [i, links] = await Promise.all([inv(), sources.links()]);
      const byName = new Map(links.map((l) => [l.name, l]));
      return i.endpoints.flatMap((e) => {
        const st = e.state as { hostIf?: string };
        const link = st.hostIf ? byName.get(st.hostIf) : undefined;
        return link?.stats ? [{ labels: { endpoint: e.id.slice(0, 12), network: e.networkId.slice(0, 12) }, link }] : [];
      });
    });
    const perEndpoint = (name: string, help: string, pick: (s: NonNullable<Link['stats']>) => bigint): void =>
      mirroredCounter(r, name, help, ['endpoint', 'network'], async () => (await endpointLinks()).map(({ labels, link }) => [labels, Number(pick(link.stats!))]));
    perEndpoint('tsnet_endpoint_receive_bytes_total', 'Bytes the container received', (s) => s.txBytes);
    perEndpoint('tsnet_endpoint_transmit_bytes_total', 'Bytes the container sent', (s) => s.rxBytes);
    perEndpoint('tsnet_endpoint_receive_drops_total', 'Packets dropped on their way to the container', (s) => s.txDropped);
    perEndpoint('tsnet_endpoint_transmit_drops_total', 'Packets from the container dropped', (s) => s.rxDropped);
  }

  call(front: 'cnm' | 'cni', call: string, seconds: number, errorCode?: string): void {
    this.calls.inc({ front, call });
    this.callSeconds.observe({ front, call }, seconds);
    if (errorCode) this.errors.inc({ front, call, code: errorCode });
  }

  dns(seconds: number, outcome: DnsOutcome): void {
    this.dnsQueries.inc({ outcome });
    this.dnsSeconds.observe({ outcome }, seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
