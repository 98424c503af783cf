// What the store holds, as rows for people and scripts: networks, endpoints, IPAM pools, published
// ports, and name lookups. One code path for both ways the CLI gets them: from the running daemon
// (its control API calls these on its own store) and straight from the store when it is down.

import { Ipam, type AllocationRecord, type PoolRecord } from '../ipam/ipam.js';
import { RecordBook, type Lookup } from '../dns/records.js';
import type { Store } from '../store/store.js';
import { endpointNames } from './dns-service.js';
import type { EndpointRecord, NetworkRecord } from './network-service.js';

export interface Inventory {
  networks: NetworkRecord[];
  endpoints: EndpointRecord[];
  pools: Array<PoolRecord & { allocations: AllocationRecord[] }>;
}

export async function readInventory(store: Store): Promise<Inventory> {
  const [networks, endpoints] = await store.read((tx) => [
    tx.list<NetworkRecord>('net/').map(([, n]) => n),
    tx.list<EndpointRecord>('ep/').map(([, e]) => e),
  ] as const);
  const ipam = new Ipam(store);
  const pools = await Promise.all((await ipam.listPools()).map(async (p) => ({ ...p, allocations: await ipam.listAddresses(p.id) })));
  return { networks, endpoints, pools };
}

export interface NetworkRow {
  id: string;
  name: string;
  driver: string;
  subnets: string[];
  gateways: string[];
  /** The bridge (tsbridge), gateway veth (tsoverlay) or parent (tsmacvlan). */
  interface: string;
  endpoints: number;
  internal: boolean;
  created: string;
}

export interface EndpointRow {
  id: string;
  network: string;
  networkName: string;
  addresses: string[];
  mac: string;
  /** The host-side interface (veth bridge end), when there is one. */
  interface: string;
  names: string[];
  ports: string[];
}

export interface PoolRow {
  id: string;
  subnet: string;
  addressSpace: string;
  family: number;
  used: number;
  /** Usable addresses: the subnet minus network and broadcast for IPv4 (a string: IPv6 is huge). */
  size: string;
  usedPercent: number;
}

/** A name people know a network by: the CNI conflist name, the overlay's cluster name, else '-'. */
export function networkName(n: NetworkRecord): string {
  if (n.id.startsWith('cni-')) return n.id.slice(4);
  return n.spec.rawOptions['tsnet.cluster_network'] ?? '-';
}

function networkInterface(n: NetworkRecord): string {
  const st = n.state as { bridge?: string; opts?: { parent?: string } };
  return st.bridge ?? st.opts?.parent ?? '-';
}

const bracket = (family: number, ip: string): string => (family === 6 ? `[${ip}]` : ip);

/** "0.0.0.0:8080/tcp", "[::]:8000-8010/udp". */
function hostSide(p: NonNullable<EndpointRecord['ports']>[number]): string {
  return `${bracket(p.family, p.hostIp)}:${p.hostPort}${p.hostPortEnd > p.hostPort ? `-${p.hostPortEnd}` : ''}/${p.proto}`;
}

export function networkRows(inv: Inventory): NetworkRow[] {
  return inv.networks.map((n) => ({
    id: n.id,
    name: networkName(n),
    driver: n.driver,
    subnets: [...n.spec.ipv4, ...n.spec.ipv6].map((s) => s.subnet),
    gateways: [...n.spec.ipv4, ...n.spec.ipv6].flatMap((s) => (s.gateway ? [s.gateway.split('/')[0]!] : [])),
    interface: networkInterface(n),
    endpoints: inv.endpoints.filter((e) => e.networkId === n.id).length,
    internal: n.spec.internal,
    created: n.createdAt,
  }));
}

/** By full id, unique id prefix (at least 3 characters), or name. */
export function findNetwork(inv: Inventory, ref: string): NetworkRecord | undefined {
  const exact = inv.networks.find((n) => n.id === ref || networkName(n) === ref);
  if (exact) return exact;
  const byPrefix = ref.length >= 3 ? inv.networks.filter((n) => n.id.startsWith(ref)) : [];
  return byPrefix.length === 1 ? byPrefix[0] : undefined;
}

/** The message when a network reference matches nothing (the API's 404, the CLI's exit 3). */
export const noSuchNetwork = (ref: string): string => `no network ${JSON.stringify(ref)}`;

export interface NetworkDetail {
  row: NetworkRow;
  record: NetworkRecord;
  endpoints: EndpointRow[];
}

/** One network as `network inspect` shows it: its row, its record and its endpoints. */
export function networkDetail(inv: Inventory, n: NetworkRecord): NetworkDetail {
  return { row: networkRows({ ...inv, networks: [n] })[0]!, record: n, endpoints: endpointRows(inv, n) };
}

export function endpointRows(inv: Inventory, network?: NetworkRecord): EndpointRow[] {
  return inv.endpoints.filter((e) => !network || e.networkId === network.id).map((e) => {
    const n = inv.networks.find((x) => x.id === e.networkId);
    const st = e.state as { hostIf?: string; mac?: string };
    return {
      id: e.id,
      network: e.networkId,
      networkName: n ? networkName(n) : '-',
      addresses: [e.spec.address4, e.spec.address6].filter((a): a is string => !!a),
      mac: e.spec.mac ?? st.mac ?? '-',
      interface: st.hostIf ?? '-',
      names: e.names ?? [],
      ports: (e.ports ?? []).map((p) => `${hostSide(p).replace(/\/\w+$/, '')}->${p.containerPort}/${p.proto}`),
    };
  });
}

function usable(subnet: string, family: number): bigint {
  const len = Number(subnet.split('/')[1]);
  const total = 1n << BigInt((family === 6 ? 128 : 32) - len);
  return family === 4 && len < 31 ? total - 2n : total;
}

export function poolRows(inv: Inventory): PoolRow[] {
  return inv.pools.map((p) => {
    const size = usable(p.range ?? p.subnet, p.family);
    const used = p.allocations.length;
    return {
      id: p.id, subnet: p.subnet, addressSpace: p.addressSpace, family: p.family, used,
      size: size.toString(), usedPercent: Number((BigInt(used) * 10000n) / (size || 1n)) / 100,
    };
  });
}

export interface PortRow {
  network: string;
  endpoint: string;
  host: string;
  container: string;
}

/** Published ports (`docker port` cannot show those of a remote driver). */
export function portRows(inv: Inventory): PortRow[] {
  return inv.endpoints.flatMap((e) => (e.ports ?? []).map((p) => ({
    network: e.networkId.slice(0, 12),
    endpoint: e.id.slice(0, 12),
    host: hostSide(p),
    // The container side has its own family: a relayed [::] port may lead to an IPv4 address.
    container: `${bracket(p.containerIp.includes(':') ? 6 : 4, p.containerIp)}:${p.containerPort}`,
  })));
}

/** Answers a name the way the network's resolver would, from the records alone (no forwarding). */
export function lookupName(inv: Inventory, network: NetworkRecord, name: string, type: 'A' | 'AAAA' | 'PTR' | 'ANY', domain?: string): Lookup {
  const book = new RecordBook(domain);
  for (const e of inv.endpoints) if (e.networkId === network.id && e.joined) book.setEndpoint(e.networkId, e.id, endpointNames(e));
  return book.lookup(network.id, name, type);
}
