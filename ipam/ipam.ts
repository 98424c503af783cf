// tsipam: pools and addresses kept in the store. Allocation is "next free after the last one
// handed out" (wrapping), found by walking allocated keys in order from the cursor, so its cost
// depends on how many taken addresses follow the cursor, never on the pool's size: a /64 costs the
// same as a /24 and nothing is ever sized by the pool (no bitmaps).

import { NetError } from '../kernel/errors.js';
import type { Store, Tx } from '../store/store.js';
import {
  type Family, type Subnet, bigToIp, contains, containsIp, ipKey, ipToBig, overlaps, parseSubnet, splitSubnet,
} from './subnet.js';

export type AllocationKind = 'gateway' | 'aux' | 'endpoint';

export interface PoolRecord {
  id: string;
  addressSpace: string;
  family: Family;
  subnet: string;
  /** Dynamic allocations come from here (Docker's --ip-range); defaults to the subnet. */
  range?: string;
  /** Reference count: Docker may request the same pool again (replay) and release it per request. */
  refs: number;
  /** Hex key of the last address handed out dynamically (kept under its own key, see K.cursor). */
  cursor?: string;
  /** True when the pool was picked from the defaults (not asked for by subnet). */
  auto: boolean;
  createdAt: string;
}

export interface AllocationRecord {
  ip: string;
  owner: string;
  kind: AllocationKind;
  at: string;
}

export interface PoolRequest {
  addressSpace?: string;
  /** Requested subnet; empty means "choose a default pool". */
  pool?: string;
  /** Sub-range for dynamic allocation (--ip-range). */
  subPool?: string;
  v6?: boolean;
}

export interface AddressRequest {
  /** A specific address (--ip, --gateway, an aux address); empty means "any free one". */
  address?: string;
  owner: string;
  kind?: AllocationKind;
}

export interface IpamOptions {
  /** Default IPv4 pools: [base CIDR, size] in order; Docker's list unless configured. */
  defaultPools4?: Array<{ base: string; size: number }>;
  /** Default IPv6 pools; a ULA /48 split into /64s unless configured. */
  defaultPools6?: Array<{ base: string; size: number }>;
  /** Networks already used on the host (routes, addresses, resolvers) that a default pool must avoid. */
  hostNetworks?: () => Promise<string[]>;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export const DOCKER_DEFAULT_POOLS4 = [
  { base: '172.17.0.0/16', size: 16 },
  { base: '172.18.0.0/16', size: 16 },
  { base: '172.19.0.0/16', size: 16 },
  { base: '172.20.0.0/14', size: 16 },
  { base: '172.24.0.0/14', size: 16 },
  { base: '172.28.0.0/14', size: 16 },
  { base: '192.168.0.0/16', size: 20 },
];
/** A fixed ULA prefix for default IPv6 pools ("tsnet" in the global ID bytes); configurable. */
export const DEFAULT_POOLS6 = [{ base: 'fd74:736e:6574::/48', size: 64 }];

export const LOCAL_SPACE = 'tsnet-local';
export const GLOBAL_SPACE = 'tsnet-global';

const K = {
  pool: (id: string) => `ipam/pool/${id}`,
  pools: 'ipam/pool/',
  addr: (id: string, key: string) => `ipam/addr/${id}/${key}`,
  addrs: (id: string) => `ipam/addr/${id}/`,
  allAddrs: 'ipam/addr/',
  defaultCursor: (family: Family) => `ipam/default-cursor/${family}`,
  // The allocation cursor lives apart from the pool record so each allocation rewrites a few
  // bytes, not the whole pool.
  cursor: (id: string) => `ipam/cursor/${id}`,
};

function poolId(space: string, subnet: string, range?: string): string {
  return range ? `${space}/${subnet}/${range}` : `${space}/${subnet}`;
}

/** Usable addresses of a pool: network (and IPv4 broadcast) excluded except in /31 and /32 (/127, /128). */
function usable(sub: Subnet, within: Subnet): { lo: bigint; hi: bigint } {
  const bits = sub.family === 4 ? 32 : 128;
  let lo = within.first;
  let hi = within.last;
  if (sub.prefixLen < bits - 1) {
    if (lo === sub.first) lo += 1n;
    if (sub.family === 4 && hi === sub.last) hi -= 1n;
  }
  return { lo, hi };
}

/** Allocates elsewhere for some pools (tsoverlay subnets: addresses unique across hosts). */
export interface AddressDelegate {
  /** Returns "ip/len"; `address` is a static request. */
  allocate(address: string | undefined): Promise<string>;
  release(ip: string): Promise<void>;
}

/** Who holds an address, for an error people read ("by the network's gateway", …). */
function heldBy(a: AllocationRecord): string {
  if (a.kind === 'gateway') return "by the network's gateway";
  if (a.kind === 'aux') return 'as an auxiliary address';
  // Docker asks for --aux-address reservations as plain requests: they look like its containers'.
  if (a.owner.startsWith('docker:')) return 'by a container or an --aux-address of the network';
  return `by ${a.owner.slice(0, 12)}`;
}

export class Ipam {
  /** Unset unless a cluster store is configured: then no pool lookup is added to every call. */
  private delegateFor: ((subnet: string) => Promise<AddressDelegate | undefined>) | undefined;

  private async delegateOf(poolId: string): Promise<AddressDelegate | undefined> {
    if (!this.delegateFor) return undefined;
    const pool = await this.getPool(poolId);
    return pool ? this.delegateFor(pool.subnet) : undefined;
  }

  /** Routes endpoint addresses of matching pools to another allocator (gateways stay local). */
  setDelegates(resolve: (subnet: string) => Promise<AddressDelegate | undefined>): void {
    this.delegateFor = resolve;
  }

  private readonly opts: Required<Omit<IpamOptions, 'log'>> & Pick<IpamOptions, 'log'>;

  constructor(private readonly store: Store, opts: IpamOptions = {}) {
    this.opts = {
      defaultPools4: opts.defaultPools4 ?? DOCKER_DEFAULT_POOLS4,
      defaultPools6: opts.defaultPools6 ?? DEFAULT_POOLS6,
      hostNetworks: opts.hostNetworks ?? (async () => []),
      log: opts.log,
    };
  }

  // ---- pools -------------------------------------------------------------------------------

  async requestPool(req: PoolRequest): Promise<PoolRecord> {
    const space = req.addressSpace || LOCAL_SPACE;
    const family: Family = req.v6 ? 6 : 4;
    if (req.pool) return this.requestExplicitPool(space, family, req.pool, req.subPool);
    if (req.subPool) throw new NetError('INVALID_ARGUMENT', 'an ip-range needs an explicit subnet');
    const taken = (await this.opts.hostNetworks()).flatMap((c) => {
      try {
        return [parseSubnet(c)];
      } catch {
        return [];
      }
    });
    return this.store.transact((tx) => this.pickDefaultPool(tx, space, family, taken));
  }

  private requestExplicitPool(space: string, family: Family, pool: string, subPool?: string): Promise<PoolRecord> {
    const subnet = parseSubnet(pool, true);
    if (subnet.family !== family) {
      throw new NetError('INVALID_ARGUMENT', `subnet ${pool} is IPv${subnet.family} but an IPv${family} pool was requested`);
    }
    let range: Subnet | undefined;
    if (subPool) {
      range = parseSubnet(subPool, true);
      if (!contains(subnet, range)) throw new NetError('INVALID_ARGUMENT', `ip-range ${subPool} is not inside subnet ${subnet.cidr}`);
    }
    const id = poolId(space, subnet.cidr, range?.cidr);
    return this.store.transact((tx) => {
      const existing = tx.get<PoolRecord>(K.pool(id));
      if (existing) {
        // The same request again (Docker's replay after its own restart): count it.
        existing.refs += 1;
        tx.put(K.pool(id), existing);
        return existing;
      }
      for (const [, p] of tx.list<PoolRecord>(K.pools)) {
        if (p.addressSpace === space && overlaps(parseSubnet(p.subnet), subnet)) {
          throw new NetError('POOL_OVERLAP', `subnet ${subnet.cidr} overlaps ${p.subnet}, which is in use`);
        }
      }
      const rec: PoolRecord = {
        id, addressSpace: space, family, subnet: subnet.cidr, refs: 1, auto: false, createdAt: new Date().toISOString(),
        ...(range ? { range: range.cidr } : {}),
      };
      tx.put(K.pool(id), rec);
      return rec;
    });
  }

  private pickDefaultPool(tx: Tx, space: string, family: Family, hostTaken: Subnet[]): PoolRecord {
    const inUse = tx.list<PoolRecord>(K.pools).map(([, p]) => parseSubnet(p.subnet));
    const bases = family === 4 ? this.opts.defaultPools4 : this.opts.defaultPools6;
    // Flatten lazily: IPv6 bases split into 2^16 /64s, so never materialise the whole list.
    const candidates = function* (): Generator<Subnet> {
      for (const b of bases) yield* splitSubnet(parseSubnet(b.base), b.size, 1 << 16);
    };
    // Start after the last default handed out, so a just-released pool is not reused at once.
    const cursor = tx.get<string>(K.defaultCursor(family));
    let passedCursor = cursor === undefined;
    let firstFree: Subnet | undefined;
    let afterCursor: Subnet | undefined;
    for (const c of candidates()) {
      const free = !inUse.some((u) => overlaps(u, c)) && !hostTaken.some((h) => overlaps(h, c));
      if (free && !firstFree) firstFree = c;
      if (passedCursor && free) {
        afterCursor = c;
        break;
      }
      if (c.cidr === cursor) passedCursor = true;
    }
    const chosen = afterCursor ?? firstFree;
    if (!chosen) {
      throw new NetError('POOL_EXHAUSTED', `no free default IPv${family} pool: every default overlaps a network in use or a host route; give --subnet explicitly`);
    }
    tx.put(K.defaultCursor(family), chosen.cidr);
    const rec: PoolRecord = {
      id: poolId(space, chosen.cidr), addressSpace: space, family, subnet: chosen.cidr, refs: 1, auto: true, createdAt: new Date().toISOString(),
    };
    tx.put(K.pool(rec.id), rec);
    return rec;
  }

  /**
   * The pool for exactly this subnet, created if missing, without taking a reference: CNI has no
   * RequestPool/ReleasePool pair, the pool lives as long as the network.
   */
  async ensurePool(subnet: string, addressSpace = LOCAL_SPACE): Promise<PoolRecord> {
    const s = parseSubnet(subnet, true);
    return (await this.findPool(s.cidr, addressSpace)) ?? this.requestPool({ addressSpace, pool: s.cidr, v6: s.family === 6 });
  }

  /** The whole-subnet pool of `subnet` in the address space, if there is one. */
  findPool(subnet: string, addressSpace = LOCAL_SPACE): Promise<PoolRecord | undefined> {
    const cidr = parseSubnet(subnet, true).cidr;
    return this.store.read((tx) =>
      tx.list<PoolRecord>(K.pools).map(([, p]) => p).find((p) => p.subnet === cidr && !p.range && p.addressSpace === addressSpace),
    );
  }

  /** Frees every address held by `owner` (a CNI attachment), in one transaction; idempotent. */
  releaseOwner(owner: string): Promise<AllocationRecord[]> {
    return this.store.transact((tx) => {
      const freed: AllocationRecord[] = [];
      for (const [key, a] of tx.list<AllocationRecord>(K.allAddrs)) {
        if (a.owner === owner) {
          tx.delete(key);
          freed.push(a);
        }
      }
      return freed;
    });
  }

  /**
   * Drops one reference; the last one frees the pool and whatever it still holds. `everyRef` frees
   * it whatever its count (its requesters are gone: a network Docker forgot, an operator's rm).
   */
  async releasePool(id: string, opts: { everyRef?: boolean } = {}): Promise<{ released: boolean; freed: AllocationRecord[] }> {
    const result = await this.store.transact((tx) => {
      const p = tx.get<PoolRecord>(K.pool(id));
      if (!p) return { released: false, freed: [] as AllocationRecord[] };
      if (p.refs > 1 && !opts.everyRef) {
        p.refs -= 1;
        tx.put(K.pool(id), p);
        return { released: false, freed: [] as AllocationRecord[] };
      }
      const freed = tx.list<AllocationRecord>(K.addrs(id)).map(([k, a]) => {
        tx.delete(k);
        return a;
      });
      tx.delete(K.pool(id));
      tx.delete(K.cursor(id));
      return { released: true, freed };
    });
    // Docker only logs a failed ReleasePool, so refusing would leak the pool; we free and say so.
    if (result.freed.length) this.opts.log?.('pool released with addresses still allocated; freed them', { pool: id, freed: result.freed.map((a) => a.ip) });
    return result;
  }

  getPool(id: string): Promise<PoolRecord | undefined> {
    return this.store.read((tx) => tx.get<PoolRecord>(K.pool(id)));
  }

  listPools(): Promise<PoolRecord[]> {
    return this.store.read((tx) => tx.list<PoolRecord>(K.pools).map(([, p]) => p));
  }

  // ---- addresses ---------------------------------------------------------------------------

  /** Allocates and returns "ip/prefixLen" (the pool's prefix, as Docker expects). */
  async requestAddress(id: string, req: AddressRequest): Promise<string> {
    if ((req.kind ?? 'endpoint') === 'endpoint') {
      const d = await this.delegateOf(id);
      if (d) return d.allocate(req.address);
    }
    return this.store.transact((tx) => this.allocate(tx, id, req));
  }

  /** The same, inside a caller's transaction (so an endpoint record and its address commit together). */
  allocate(tx: Tx, id: string, req: AddressRequest): string {
    const p = tx.get<PoolRecord>(K.pool(id));
    if (!p) throw new NetError('NOT_FOUND', `address pool ${id} does not exist`);
    const subnet = parseSubnet(p.subnet);
    const kind = req.kind ?? 'endpoint';
    const range = p.range ? parseSubnet(p.range) : subnet;
    const { lo, hi } = usable(subnet, range);
    let value: bigint;
    if (req.address) {
      const wanted = ipToBig(req.address.split('/')[0]!);
      if (!containsIp(subnet, wanted.family, wanted.value)) {
        throw new NetError('ADDRESS_OUT_OF_RANGE', `address ${req.address} is not in subnet ${p.subnet}`);
      }
      const whole = usable(subnet, subnet);
      if (wanted.value < whole.lo || wanted.value > whole.hi) {
        throw new NetError('ADDRESS_OUT_OF_RANGE', `address ${req.address} is the network or broadcast address of ${p.subnet}`);
      }
      const key = K.addr(id, ipKey(p.family, wanted.value));
      const holder = tx.get<AllocationRecord>(key);
      if (holder) {
        if (holder.owner === req.owner && holder.kind === kind) return `${holder.ip}/${subnet.prefixLen}`; // idempotent retry
        throw new NetError('ADDRESS_IN_USE', `address ${holder.ip} is already in use ${heldBy(holder)}`);
      }
      value = wanted.value;
    } else if (kind === 'gateway') {
      // The gateway is the first usable address of the range, as Docker's IPAM does.
      value = this.firstFreeFrom(tx, p, lo, lo, hi);
    } else {
      const cursor = tx.get<string>(K.cursor(id));
      const after = cursor !== undefined ? BigInt(`0x${cursor}`) + 1n : lo;
      value = this.firstFreeFrom(tx, p, after > hi || after < lo ? lo : after, lo, hi);
      tx.put(K.cursor(id), ipKey(p.family, value));
    }
    const ip = bigToIp(p.family, value);
    tx.put<AllocationRecord>(K.addr(id, ipKey(p.family, value)), { ip, owner: req.owner, kind, at: new Date().toISOString() });
    return `${ip}/${subnet.prefixLen}`;
  }

  /** First free address at or after `start`, wrapping to `lo`; walks taken keys in order. */
  private firstFreeFrom(tx: Tx, p: PoolRecord, start: bigint, lo: bigint, hi: bigint): bigint {
    const prefix = K.addrs(p.id);
    // Fast path: the address right after the cursor is usually free.
    if (!tx.has(prefix + ipKey(p.family, start))) return start;
    const scan = (from: bigint, to: bigint): bigint | undefined => {
      let candidate = from;
      while (candidate <= to) {
        const batch = tx.keys(prefix, { start: prefix + ipKey(p.family, candidate), limit: 256 });
        if (batch.length === 0) return candidate;
        for (const k of batch) {
          const taken = BigInt(`0x${k.slice(prefix.length)}`);
          if (taken > candidate) return candidate <= to ? candidate : undefined;
          candidate = taken + 1n;
        }
      }
      return undefined;
    };
    const found = scan(start, hi) ?? (start > lo ? scan(lo, start - 1n) : undefined);
    if (found === undefined) throw new NetError('POOL_EXHAUSTED', `no free address left in ${p.range ?? p.subnet}`);
    return found;
  }

  /** Frees an address; a missing one is fine. Returns whether something was freed. */
  async releaseAddress(id: string, address: string): Promise<boolean> {
    const d = await this.delegateOf(id);
    if (d) await d.release(address.split('/')[0]!);
    return this.store.transact((tx) => this.release(tx, id, address));
  }

  release(tx: Tx, id: string, address: string): boolean {
    const p = tx.get<PoolRecord>(K.pool(id));
    if (!p) return false;
    const { family, value } = ipToBig(address.split('/')[0]!);
    if (family !== p.family) return false;
    return tx.delete(K.addr(id, ipKey(family, value)));
  }

  listAddresses(id: string): Promise<AllocationRecord[]> {
    return this.store.read((tx) => tx.list<AllocationRecord>(K.addrs(id)).map(([, a]) => a));
  }

  /** Frees every endpoint allocation whose owner is not in `live`; returns what it freed. */
  async gc(live: ReadonlySet<string>): Promise<Array<AllocationRecord & { pool: string }>> {
    return this.store.transact((tx) => {
      const freed: Array<AllocationRecord & { pool: string }> = [];
      for (const [key, a] of tx.list<AllocationRecord>(K.allAddrs)) {
        if (a.kind !== 'endpoint' || live.has(a.owner)) continue;
        const pool = key.slice(K.allAddrs.length, key.lastIndexOf('/'));
        tx.delete(key);
        freed.push({ ...a, pool });
      }
      return freed;
    });
  }
}
