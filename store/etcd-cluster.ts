// Cluster-wide state for tsoverlay in etcd (v3 API over gRPC, through the etcd3 client).
//
// Layout under /tsnet/v1/:
//   net/<name>            ClusterNetwork          created once, by whichever host comes first
//   vni/<vni>             <name>                  makes a VNI unique across networks
//   addr/<name>/<ip>      {host, endpoint}        makes an address unique across hosts
//   host/<id>             {vtep}                  under this host's lease
//   member/<name>/<id>    {vtep}                  under the lease: who gets broadcast copies
//   ep/<name>/<id>        ClusterEndpoint         under the lease: FDB and neighbour entries
// Every "take" is a transaction comparing CreateRevision with 0, so two hosts racing for the same
// address or VNI cannot both win. Leased keys vanish when a host stops renewing; addresses are not
// leased (a container keeps its address across a daemon restart) and are reclaimed after a grace
// period by sweepDeadHosts.

import { Etcd3, EtcdLeaseInvalidError, type Lease } from 'etcd3';
import { ExponentialBackoff, noop } from 'cockatiel';
import { NetError } from '../kernel/errors.js';
import { IPAM_OWNER } from './cluster-store.js';
import { bigToIp, ipToBig, parseSubnet } from '../ipam/subnet.js';
import type {
  ClusterEndpoint, ClusterMember, ClusterNetwork, ClusterNetworkRequest, ClusterState, ClusterView,
} from '../drivers/overlay/cluster.js';
import type { Logger } from '../drivers/driver.js';

export interface EtcdClusterOptions {
  /** "host:port" of each etcd member. */
  endpoints: string[];
  hostId: string;
  vtep: string;
  /** Seconds a silent host keeps its leased keys (default 10). */
  leaseTtl?: number;
  /** Seconds after a host's lease is gone before its addresses are freed (default 60). */
  graceSeconds?: number;
  /** Per-call deadline in ms (default 3000): attachments fail fast while etcd is away. */
  timeoutMs?: number;
  log: Logger;
  prefix?: string;
}

/** First VNI handed out when none is asked for; low ones are left to people picking by hand. */
const VNI_BASE = 4096;
const VNI_MAX = 0xffffff;

interface AddrOwner {
  host: string;
  endpoint: string;
}

export class EtcdCluster implements ClusterState {
  readonly hostId: string;
  readonly vtep: string;
  private readonly client: Etcd3;
  private readonly p: string;
  private readonly ttl: number;
  private readonly grace: number;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private lease!: Lease;
  /** What this host published, so a lost lease can be replaced and everything put back. */
  private readonly members = new Set<string>();
  private readonly endpoints = new Map<string, Omit<ClusterEndpoint, 'host' | 'vtep'>>();
  private readonly watchers = new Map<string, { w: Promise<{ cancel(): Promise<void> }>; listeners: Set<() => void> }>();
  /** When each host was first seen without a lease (for the address grace period). */
  private readonly deadSince = new Map<string, number>();
  private closed = false;
  private republishing: Promise<void> | undefined;

  constructor(private readonly opts: EtcdClusterOptions) {
    this.hostId = opts.hostId;
    this.vtep = opts.vtep;
    this.p = opts.prefix ?? '/tsnet/v1/';
    this.ttl = opts.leaseTtl ?? 10;
    this.grace = (opts.graceSeconds ?? 60) * 1000;
    this.timeoutMs = opts.timeoutMs ?? 3000;
    this.log = opts.log;
    this.client = new Etcd3({
      hosts: opts.endpoints.map((e) => `http://${e}`),
      // Every unary call carries a deadline; no circuit breaker, so the first call after etcd
      // comes back succeeds instead of waiting for a half-open timer; watches retry quickly.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.timeoutMs }),
      faultHandling: { host: () => noop, global: noop, watchBackoff: new ExponentialBackoff({ initialDelay: 200, maxDelay: 2000 }) as never },
    });
    this.newLease();
  }

  private k = {
    net: (n: string) => `${this.p}net/${n}`,
    vni: (v: number) => `${this.p}vni/${v}`,
    vnis: () => `${this.p}vni/`,
    addr: (n: string, ip: string) => `${this.p}addr/${n}/${ip}`,
    addrs: (n: string) => `${this.p}addr/${n}/`,
    allAddrs: () => `${this.p}addr/`,
    host: (h: string) => `${this.p}host/${h}`,
    hosts: () => `${this.p}host/`,
    member: (n: string, h: string) => `${this.p}member/${n}/${h}`,
    members: (n: string) => `${this.p}member/${n}/`,
    ep: (n: string, id: string) => `${this.p}ep/${n}/${id}`,
    eps: (n: string) => `${this.p}ep/${n}/`,
  };

  private newLease(): void {
    this.lease = this.client.lease(this.ttl, { autoKeepAlive: true });
    this.lease.on('lost', (err) => {
      if (this.closed) return;
      this.log.warn({ err: err.message }, 'cluster lease lost; registering again');
      this.newLease();
      void this.republish();
    });
  }

  /** Puts the host key, memberships and endpoints back under the current lease, until it works. */
  republish(): Promise<void> {
    this.republishing ??= (async () => {
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          await this.registerHost();
          for (const n of this.members) await this.call('join', () => this.lease.put(this.k.member(n, this.hostId)).value(JSON.stringify({ vtep: this.vtep })));
          for (const [key, ep] of this.endpoints) {
            const [n] = key.split('\0') as [string];
            await this.call('publish', () => this.lease.put(this.k.ep(n, ep.id)).value(JSON.stringify(this.full(ep))));
          }
          return;
        } catch (e) {
          if (attempt === 0 || attempt % 20 === 0) this.log.warn({ err: (e as Error).message }, 'cluster store unreachable; will keep trying');
          if (e instanceof NetError && e.netCode === 'UNAVAILABLE' && (e.cause as Error | undefined) instanceof EtcdLeaseInvalidError) this.newLease();
          await new Promise((r) => setTimeout(r, Math.min(2000, 200 * (attempt + 1))));
        }
      }
    })().finally(() => {
      this.republishing = undefined;
    });
    return this.republishing;
  }

  /** Registers the host; fails (UNAVAILABLE) if etcd cannot be reached now. */
  start(): Promise<void> {
    return this.registerHost();
  }

  private async registerHost(): Promise<void> {
    await this.call('register host', () => this.lease.put(this.k.host(this.hostId)).value(JSON.stringify({ vtep: this.vtep, since: new Date().toISOString() })));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const { w } of this.watchers.values()) await w.then((x) => x.cancel()).catch(() => undefined);
    // The lease is left to expire rather than revoked: a restart within the TTL then looks, to the
    // other hosts, like nothing happened (no entries dropped and re-added).
    this.lease.release();
    this.client.close();
  }

  /** Runs one etcd call; connection failures and deadlines become UNAVAILABLE with a clear message. */
  private async call<T>(what: string, fn: () => PromiseLike<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof NetError) throw e;
      throw new NetError('UNAVAILABLE', `cluster store (etcd ${this.opts.endpoints.join(',')}) unavailable during ${what}: ${(e as Error).message}. Existing containers keep working; retry when etcd is back`, { cause: e });
    }
  }

  private full(ep: Omit<ClusterEndpoint, 'host' | 'vtep'>): ClusterEndpoint {
    return { ...ep, host: this.hostId, vtep: this.vtep };
  }

  async ensureNetwork(req: ClusterNetworkRequest): Promise<ClusterNetwork> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const existing = await this.call('read network', () => this.client.get(this.k.net(req.name)).json()) as ClusterNetwork | null;
      if (existing) {
        checkMatches(existing, req);
        return existing;
      }
      const vni = req.vni ?? (await this.freeVni());
      const net: ClusterNetwork = {
        name: req.name, vni,
        ...(req.subnet4 ? { subnet4: req.subnet4 } : {}), ...(req.gateway4 ? { gateway4: req.gateway4 } : {}),
        ...(req.subnet6 ? { subnet6: req.subnet6 } : {}), ...(req.gateway6 ? { gateway6: req.gateway6 } : {}),
        ...(req.mtu ? { mtu: req.mtu } : {}),
      };
      const gwOwner = JSON.stringify({ host: '', endpoint: 'gateway' } satisfies AddrOwner);
      const txn = this.client
        .if(this.k.net(req.name), 'Create', '==', 0)
        .and(this.k.vni(vni), 'Create', '==', 0)
        .then(
          this.client.put(this.k.net(req.name)).value(JSON.stringify(net)),
          this.client.put(this.k.vni(vni)).value(req.name),
          ...[net.gateway4, net.gateway6].filter((g): g is string => !!g).map((g) => this.client.put(this.k.addr(req.name, g.split('/')[0]!)).value(gwOwner)),
        );
      const res = await this.call('create network', () => txn.commit());
      if (res.succeeded) {
        this.log.info({ network: req.name, vni }, 'cluster network created');
        return net;
      }
      // Lost a race: either the network appeared (checked on the next pass) or the VNI was taken.
      if (req.vni !== undefined) {
        const owner = await this.call('read vni', () => this.client.get(this.k.vni(req.vni!)).string());
        if (owner && owner !== req.name) throw new NetError('ALREADY_EXISTS', `VNI ${req.vni} is used by cluster network ${owner}`);
      }
    }
    throw new NetError('TRY_AGAIN', `could not create cluster network ${req.name}: too much contention`);
  }

  private async freeVni(): Promise<number> {
    const used = new Set((await this.call('list vnis', () => this.client.getAll().prefix(this.k.vnis()).keys())).map((k) => Number(k.slice(this.k.vnis().length))));
    for (let v = VNI_BASE; v <= VNI_MAX; v++) if (!used.has(v)) return v;
    throw new NetError('POOL_EXHAUSTED', 'no VNI left');
  }

  async claimAddress(network: string, ip: string, endpoint: string): Promise<void> {
    const key = this.k.addr(network, ip);
    const mine = JSON.stringify({ host: this.hostId, endpoint } satisfies AddrOwner);
    const res = await this.call('claim address', () => this.client.if(key, 'Create', '==', 0).then(this.client.put(key).value(mine)).else(this.client.get(key)).commit());
    if (res.succeeded) return;
    const raw = res.responses[0]?.response_range?.kvs[0]?.value?.toString();
    const owner = raw ? (JSON.parse(raw) as AddrOwner) : undefined;
    if (owner?.host === this.hostId && owner.endpoint === endpoint) return; // already ours (a retry)
    if (owner?.host === this.hostId && owner.endpoint === IPAM_OWNER && raw) {
      // Taken by this host's tsipam for Docker (RequestAddress comes before CreateEndpoint): hand over.
      const moved = await this.call('claim address', () => this.client.if(key, 'Value', '==', raw).then(this.client.put(key).value(mine)).commit());
      if (moved.succeeded) return;
      return this.claimAddress(network, ip, endpoint);
    }
    throw new NetError('ADDRESS_IN_USE', `address ${ip} of cluster network ${network} is in use by ${owner?.endpoint === 'gateway' ? 'the gateway' : `endpoint ${owner?.endpoint.slice(0, 12)} on host ${owner?.host}`}${owner?.endpoint === 'gateway' ? '' : '; with Docker, create the network with --ipam-driver tsipam so addresses are allocated cluster-wide'}`);
  }

  /** Allocations of this process are serialised per network; only other hosts can race us. */
  private readonly allocChains = new Map<string, Promise<unknown>>();

  allocateAddress(network: string, subnet: string, endpoint: string): Promise<string> {
    const prev = this.allocChains.get(network) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.allocateOnce(network, subnet, endpoint));
    this.allocChains.set(network, next);
    void next.finally(() => {
      if (this.allocChains.get(network) === next) this.allocChains.delete(network);
    }).catch(() => undefined);
    return next;
  }

  private async allocateOnce(network: string, subnet: string, endpoint: string): Promise<string> {
    const s = parseSubnet(subnet);
    const prefix = this.k.addrs(network);
    for (let attempt = 0; attempt < 30; attempt++) {
      const taken = new Set((await this.call('list addresses', () => this.client.getAll().prefix(prefix).keys())).map((k) => k.slice(prefix.length)));
      // The network address, and the IPv4 broadcast, are never handed out. Hosts racing for the
      // lowest free address would collide every time: each picks at random among the first few.
      const last = s.family === 4 ? s.last - 1n : s.last;
      const free: string[] = [];
      for (let v = s.first + 1n; v <= last && free.length < 16; v++) {
        const ip = bigToIp(s.family, v);
        if (!taken.has(ip)) free.push(ip);
      }
      if (!free.length) throw new NetError('POOL_EXHAUSTED', `no free address left in ${subnet} of cluster network ${network}`);
      const pick = free[attempt === 0 ? 0 : Math.floor(Math.random() * free.length)]!;
      try {
        await this.claimAddress(network, pick, endpoint);
        return `${pick}/${s.prefixLen}`;
      } catch (e) {
        if (!(e instanceof NetError && e.netCode === 'ADDRESS_IN_USE')) throw e;
        // Another host took it between our read and our transaction: read again.
      }
    }
    throw new NetError('TRY_AGAIN', `could not allocate in ${subnet}: too much contention`);
  }

  async releaseAddress(network: string, ip: string, endpoint: string): Promise<void> {
    const key = this.k.addr(network, ip);
    const mine = JSON.stringify({ host: this.hostId, endpoint } satisfies AddrOwner);
    await this.call('release address', () => this.client.if(key, 'Value', '==', mine).then(this.client.delete().key(key)).commit());
  }

  async join(network: string): Promise<void> {
    await this.call('join network', () => this.lease.put(this.k.member(network, this.hostId)).value(JSON.stringify({ vtep: this.vtep })));
    this.members.add(network);
  }

  async leave(network: string): Promise<void> {
    this.members.delete(network);
    await this.call('leave network', () => this.client.delete().key(this.k.member(network, this.hostId)));
    // The last host out removes the network (and its VNI and gateway addresses), so the name can be
    // reused with other settings. Only when no endpoint address of any host remains.
    const [members, addrs] = await Promise.all([
      this.call('list members', () => this.client.getAll().prefix(this.k.members(network)).keys()),
      this.call('list addresses', () => this.client.getAll().prefix(this.k.addrs(network)).strings()),
    ]);
    if (members.length) return;
    if (Object.values(addrs).some((v) => (JSON.parse(v) as AddrOwner).endpoint !== 'gateway')) return;
    const net = await this.call('read network', () => this.client.get(this.k.net(network)).json()) as ClusterNetwork | null;
    if (!net) return;
    await this.call('remove network', () =>
      this.client.if(this.k.net(network), 'Create', '>', 0)
        .then(
          this.client.delete().key(this.k.net(network)),
          this.client.delete().key(this.k.vni(net.vni)),
          this.client.delete().prefix(this.k.addrs(network)),
        ).commit(),
    );
    this.log.info({ network }, 'cluster network removed (last host left)');
  }

  async publishEndpoint(network: string, ep: Omit<ClusterEndpoint, 'host' | 'vtep'>): Promise<void> {
    await this.call('publish endpoint', () => this.lease.put(this.k.ep(network, ep.id)).value(JSON.stringify(this.full(ep))));
    this.endpoints.set(`${network}\0${ep.id}`, ep);
  }

  async withdrawEndpoint(network: string, id: string): Promise<void> {
    await this.call('withdraw endpoint', () => this.client.delete().key(this.k.ep(network, id)));
    this.endpoints.delete(`${network}\0${id}`);
  }

  async view(network: string): Promise<ClusterView> {
    const [eps, members] = await Promise.all([
      this.call('list endpoints', () => this.client.getAll().prefix(this.k.eps(network)).strings()),
      this.call('list members', () => this.client.getAll().prefix(this.k.members(network)).strings()),
    ]);
    const mp = this.k.members(network);
    return {
      endpoints: Object.values(eps).map((v) => JSON.parse(v) as ClusterEndpoint),
      members: Object.entries(members).map(([k, v]) => ({ host: k.slice(mp.length), vtep: (JSON.parse(v) as { vtep: string }).vtep }) satisfies ClusterMember),
    };
  }

  async owned(network: string): Promise<{ addresses: Array<{ ip: string; endpoint: string }>; endpoints: string[] }> {
    const ap = this.k.addrs(network);
    const [addrs, eps] = await Promise.all([
      this.call('list addresses', () => this.client.getAll().prefix(ap).strings()),
      this.call('list endpoints', () => this.client.getAll().prefix(this.k.eps(network)).strings()),
    ]);
    return {
      addresses: Object.entries(addrs).flatMap(([k, v]) => {
        const o = JSON.parse(v) as AddrOwner;
        return o.host === this.hostId ? [{ ip: k.slice(ap.length), endpoint: o.endpoint }] : [];
      }),
      endpoints: Object.values(eps).map((v) => JSON.parse(v) as ClusterEndpoint).filter((e) => e.host === this.hostId).map((e) => e.id),
    };
  }

  watch(network: string, changed: () => void): () => void {
    let entry = this.watchers.get(network);
    if (!entry) {
      const listeners = new Set<() => void>();
      const fire = (): void => {
        for (const l of listeners) l();
      };
      // One watch over both prefixes' parent would see other networks too; two narrow ones are cheaper.
      const w = (async () => {
        const wEp = await this.client.watch().prefix(this.k.eps(network)).create();
        const wMem = await this.client.watch().prefix(this.k.members(network)).create();
        for (const x of [wEp, wMem]) {
          x.on('put', fire).on('delete', fire).on('connected', fire);
          x.on('error', (e) => this.log.warn({ network, err: (e as Error).message }, 'cluster watch error'));
        }
        return { cancel: async () => { await wEp.cancel(); await wMem.cancel(); } };
      })();
      w.catch((e) => this.log.warn({ network, err: (e as Error).message }, 'cluster watch could not start'));
      entry = { w, listeners };
      this.watchers.set(network, entry);
    }
    const { listeners } = entry;
    listeners.add(changed);
    return () => {
      listeners.delete(changed);
      if (!listeners.size) {
        const e = this.watchers.get(network);
        this.watchers.delete(network);
        void e?.w.then((x) => x.cancel()).catch(() => undefined);
      }
    };
  }

  /**
   * Frees the addresses of hosts whose lease has been gone for the grace period. Safe on every
   * host at once: each delete compares the value it read.
   */
  async sweepDeadHosts(now = Date.now()): Promise<number> {
    const hostPrefix = this.k.hosts();
    const live = new Set((await this.call('list hosts', () => this.client.getAll().prefix(hostPrefix).keys())).map((k) => k.slice(hostPrefix.length)));
    const addrs = await this.call('list addresses', () => this.client.getAll().prefix(this.k.allAddrs()).strings());
    let freed = 0;
    const seen = new Set<string>();
    for (const [key, raw] of Object.entries(addrs)) {
      const owner = JSON.parse(raw) as AddrOwner;
      if (!owner.host || live.has(owner.host)) continue;
      seen.add(owner.host);
      const since = this.deadSince.get(owner.host) ?? now;
      this.deadSince.set(owner.host, since);
      if (now - since < this.grace) continue;
      const res = await this.call('free address', () => this.client.if(key, 'Value', '==', raw).then(this.client.delete().key(key)).commit());
      if (res.succeeded) freed++;
    }
    for (const h of this.deadSince.keys()) if (!seen.has(h)) this.deadSince.delete(h);
    if (freed) this.log.warn({ freed }, 'freed the addresses of hosts gone longer than the grace period');
    return freed;
  }
}

function checkMatches(net: ClusterNetwork, req: ClusterNetworkRequest): void {
  const diff: string[] = [];
  if (req.vni !== undefined && req.vni !== net.vni) diff.push(`VNI ${req.vni} (it has ${net.vni})`);
  const same = (a?: string, b?: string): boolean => !a || !b || a === b || safeEq(a, b);
  if (!same(req.subnet4, net.subnet4)) diff.push(`subnet ${req.subnet4} (it has ${net.subnet4})`);
  if (!same(req.subnet6, net.subnet6)) diff.push(`subnet ${req.subnet6} (it has ${net.subnet6})`);
  if (req.subnet4 && net.subnet4 && !same(req.gateway4, net.gateway4)) diff.push(`gateway ${req.gateway4} (it has ${net.gateway4})`);
  if (diff.length) throw new NetError('INVALID_ARGUMENT', `cluster network ${net.name} exists with other settings: asked for ${diff.join(', ')}`);
}

/** Compares two CIDRs or addresses by value ("10.0.0.0/24" and "10.0.0.0/24" written differently). */
function safeEq(a: string, b: string): boolean {
  try {
    const [ia, la] = a.split('/');
    const [ib, lb] = b.split('/');
    return la === lb && ipToBig(ia!).value === ipToBig(ib!).value;
  } catch {
    return false;
  }
}
