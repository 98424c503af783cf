// The resolver's data: per network, the names of its endpoints and their addresses. Pure (no
// sockets), so lookups are tested directly, aardvark-style. A name is answered only to clients of
// the same network.

export interface EndpointNames {
  names: string[];
  ipv4?: string;
  ipv6?: string;
}

export type Lookup =
  | { kind: 'answer'; addresses: string[] } // A/AAAA: shuffled, for round-robin
  | { kind: 'ptr'; names: string[] }
  | { kind: 'nodata' } // the name exists, not with this type
  | { kind: 'nxdomain' } // inside our zone, and unknown
  | { kind: 'foreign' }; // not ours: forward upstream

/** Lower-case, no trailing dot. */
export function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function reverseName(ip: string): string {
  if (ip.includes(':')) {
    const groups = expand6(ip);
    return `${groups.join('').split('').reverse().join('.')}.ip6.arpa`;
  }
  return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
}

function expand6(ip: string): string[] {
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0'));
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

interface NetworkBook {
  endpoints: Map<string, EndpointNames>;
  /** name → endpoint keys (an alias may be shared). */
  byName: Map<string, Set<string>>;
  /** reverse name → endpoint key */
  byReverse: Map<string, string>;
}

/** Told which owner names (plain names and reverse names, normalized) of a network changed. */
export type RecordsChanged = (networkId: string, owners: string[]) => void;

export class RecordBook {
  private readonly nets = new Map<string, NetworkBook>();
  private readonly watchers = new Set<RecordsChanged>();

  /** @param domain served under this suffix too (and handed to containers as search domain). */
  constructor(readonly domain = 'tsnet.internal') {}

  private book(networkId: string): NetworkBook {
    let b = this.nets.get(networkId);
    if (!b) {
      b = { endpoints: new Map(), byName: new Map(), byReverse: new Map() };
      this.nets.set(networkId, b);
    }
    return b;
  }

  /** Calls fn after every change, with the owner names whose answers may differ now. */
  watch(fn: RecordsChanged): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  private changed(networkId: string, ...recs: Array<EndpointNames | undefined>): void {
    if (this.watchers.size === 0) return;
    const owners = new Set<string>();
    for (const r of recs) {
      if (!r) continue;
      for (const n of r.names) owners.add(n);
      for (const ip of [r.ipv4, r.ipv6]) if (ip) owners.add(reverseName(ip));
    }
    if (owners.size === 0) return;
    for (const fn of this.watchers) fn(networkId, [...owners]);
  }

  /** Every owner name of a network: its endpoints' names and the reverse names of their addresses. */
  owners(networkId: string): string[] {
    const b = this.nets.get(networkId);
    return b ? [...b.byName.keys(), ...b.byReverse.keys()] : [];
  }

  setEndpoint(networkId: string, key: string, rec: EndpointNames): void {
    const old = this.detach(networkId, key);
    const b = this.book(networkId);
    const clean: EndpointNames = { ...rec, names: [...new Set(rec.names.map(normalize).filter(Boolean))] };
    b.endpoints.set(key, clean);
    for (const n of clean.names) {
      if (!b.byName.has(n)) b.byName.set(n, new Set());
      b.byName.get(n)!.add(key);
    }
    for (const ip of [clean.ipv4, clean.ipv6]) if (ip) b.byReverse.set(reverseName(ip), key);
    this.changed(networkId, old, clean);
  }

  removeEndpoint(networkId: string, key: string): void {
    this.changed(networkId, this.detach(networkId, key));
  }

  /** Takes an endpoint out of the indexes; returns what it was. */
  private detach(networkId: string, key: string): EndpointNames | undefined {
    const b = this.nets.get(networkId);
    const old = b?.endpoints.get(key);
    if (!b || !old) return undefined;
    b.endpoints.delete(key);
    for (const n of old.names) {
      const set = b.byName.get(n);
      set?.delete(key);
      if (set?.size === 0) b.byName.delete(n);
    }
    for (const ip of [old.ipv4, old.ipv6]) if (ip && b.byReverse.get(reverseName(ip)) === key) b.byReverse.delete(reverseName(ip));
    return old;
  }

  removeNetwork(networkId: string): void {
    const owners = this.owners(networkId);
    this.nets.delete(networkId);
    if (owners.length) for (const fn of this.watchers) fn(networkId, owners);
  }

  endpointCount(networkId: string): number {
    return this.nets.get(networkId)?.endpoints.size ?? 0;
  }

  lookup(networkId: string, qname: string, qtype: string): Lookup {
    const b = this.nets.get(networkId);
    let name = normalize(qname);
    const inDomain = name === this.domain || name.endsWith(`.${this.domain}`);
    if (inDomain) name = name.slice(0, -(this.domain.length + 1));
    if (name.endsWith('.in-addr.arpa') || name.endsWith('.ip6.arpa')) {
      const key = b?.byReverse.get(name);
      if (!key) return { kind: 'foreign' }; // someone else's address: upstream may know it
      if (qtype !== 'PTR') return { kind: 'nodata' };
      const names = b!.endpoints.get(key)!.names;
      return names.length ? { kind: 'ptr', names: [names[0]!] } : { kind: 'nodata' };
    }
    const keys = b?.byName.get(name);
    if (!keys || keys.size === 0) return inDomain ? { kind: 'nxdomain' } : { kind: 'foreign' };
    if (qtype !== 'A' && qtype !== 'AAAA' && qtype !== 'ANY') return { kind: 'nodata' };
    const addrs: string[] = [];
    for (const k of keys) {
      const e = b!.endpoints.get(k)!;
      if ((qtype === 'A' || qtype === 'ANY') && e.ipv4) addrs.push(e.ipv4);
      if ((qtype === 'AAAA' || qtype === 'ANY') && e.ipv6) addrs.push(e.ipv6);
    }
    return addrs.length ? { kind: 'answer', addresses: shuffle(addrs) } : { kind: 'nodata' };
  }
}
