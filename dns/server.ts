// The embedded resolver: per network, UDP and TCP listeners on the network's gateway address(es).
// It answers names of the querying client's own network, forwards everything else upstream
// (except on internal networks), and refuses clients that are not on the network, so it is never
// an open resolver.
//
// UDP goes through a native responder (kernel/udp-responder.ts): the answers for local names are
// kept in its table, refreshed whenever the record book changes, and a native thread answers them
// in batches. Every other datagram (foreign names, refusals, errors, TC) comes here, to answer().

import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { ipToBig, parseSubnet, type Subnet } from '../ipam/subnet.js';
import { containsIp } from '../ipam/subnet.js';
import { UdpResponder } from '../kernel/udp-responder.js';
import { normalize, type Lookup, type RecordBook } from './records.js';
import type { Forwarder } from './forward.js';
import { frame } from './forward.js';
import { RCODE, decode, dnsPacket, encodeResponse, ownerlessRecord, questionKey, type Decoded, type Rcode, type Rr } from './wire.js';

export interface DnsNetwork {
  id: string;
  /** Addresses to listen on (the gateway addresses, without prefix). */
  listen: string[];
  subnets: string[];
  internal: boolean;
}

export interface DnsServerOptions {
  records: RecordBook;
  forwarder: Forwarder;
  port?: number;
  /** TTL of our own records: short, since containers come and go. */
  ttl?: number;
  maxTcpConnections?: number;
  log?: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
  /** Called once per query with its time to answer and how it was answered (for metrics). */
  observe?: (seconds: number, outcome: DnsOutcome) => void;
}

export type DnsOutcome = 'local' | 'forwarded' | 'refused' | 'dropped' | 'error';

export interface DnsStats {
  queries: number;
  /** Local names answered, by JS and by the native responder's table. */
  local: number;
  /** Of those, answered by the native responder's table (no observe() call, no latency sample). */
  fromTable: number;
  /** Of the dropped, dropped by the native responder: oversized, or JS too far behind (queue full). */
  droppedNatively: number;
  forwarded: number;
  refused: number;
  dropped: number;
}

const OUR_UDP_SIZE = 1232; // the DNS flag day 2020 recommendation

interface Listening {
  net: DnsNetwork;
  subnets: Subnet[];
  udp: UdpResponder[];
  tcp: Server[];
  conns: Set<TcpSocket>;
  allowed: Map<string, boolean>;
}

export class DnsServer {
  private readonly nets = new Map<string, Listening>();
  private readonly counts = { queries: 0, local: 0, forwarded: 0, refused: 0, dropped: 0 };
  /** What responders already closed answered and dropped, so the totals never go back. */
  private readonly retired = { answered: 0, dropped: 0 };
  private readonly unwatch: () => void;

  constructor(private readonly opts: DnsServerOptions) {
    this.unwatch = opts.records.watch((networkId, owners) => {
      const l = this.nets.get(networkId);
      if (l) this.fillTable(l, owners);
    });
  }

  get stats(): DnsStats {
    const native = { ...this.retired };
    for (const l of this.nets.values()) {
      for (const u of l.udp) {
        const st = u.stats();
        native.answered += st.answered;
        native.dropped += st.dropped;
      }
    }
    const c = this.counts;
    return {
      ...c,
      queries: c.queries + native.answered + native.dropped,
      local: c.local + native.answered,
      dropped: c.dropped + native.dropped,
      fromTable: native.answered,
      droppedNatively: native.dropped,
    };
  }

  private get ttl(): number {
    return this.opts.ttl ?? 10;
  }

  /** Starts listeners for a network; a failure to bind one address is logged, not fatal. */
  async addNetwork(net: DnsNetwork): Promise<void> {
    await this.removeNetwork(net.id);
    const l: Listening = { net, subnets: net.subnets.map((s) => parseSubnet(s)), udp: [], tcp: [], conns: new Set(), allowed: new Map() };
    this.nets.set(net.id, l);
    const port = this.opts.port ?? 53;
    for (const addr of net.listen) {
      try {
        this.bindUdp(l, addr, port);
        l.tcp.push(await this.bindTcp(l, addr, port));
      } catch (e) {
        this.opts.log?.('warn', 'DNS listener could not bind', { network: net.id, address: addr, err: (e as Error).message });
      }
    }
  }

  async removeNetwork(id: string): Promise<void> {
    const l = this.nets.get(id);
    if (!l) return;
    this.nets.delete(id);
    for (const u of l.udp) {
      const st = u.stats();
      this.retired.answered += st.answered;
      this.retired.dropped += st.dropped;
      u.close();
    }
    for (const c of l.conns) c.destroy();
    await Promise.all(l.tcp.map((t) => new Promise((r) => t.close(r))));
  }

  async close(): Promise<void> {
    for (const id of [...this.nets.keys()]) await this.removeNetwork(id);
    this.unwatch();
  }

  private bindUdp(l: Listening, addr: string, port: number): void {
    const u: UdpResponder = new UdpResponder(addr, port, (msg, address, from) => {
      void this.answer(l, msg, address, 'udp').then((out) => {
        if (out) u.send(out, address, from);
      });
    });
    u.setClients(l.net.subnets);
    l.udp.push(u);
    this.fillTable(l, this.opts.records.owners(l.net.id));
  }

  /**
   * Puts the current answers for these owner names into the network's native tables (or takes
   * them out): A and AAAA for a name, bare and under the domain, and PTR for a reverse name.
   * Derived from the same lookup() and records as answer(), so both paths say the same thing.
   */
  private fillTable(l: Listening, owners: string[]): void {
    if (l.udp.length === 0) return;
    const domain = this.opts.records.domain;
    for (const owner of owners) {
      const reverse = owner.endsWith('.in-addr.arpa') || owner.endsWith('.ip6.arpa');
      for (const name of reverse ? [owner] : [owner, `${owner}.${domain}`]) {
        for (const type of reverse ? (['PTR'] as const) : (['A', 'AAAA'] as const)) {
          const key = questionKey(name, type);
          if (!key) continue;
          const rrs = this.localAnswers(this.opts.records.lookup(l.net.id, name, type), name) ?? [];
          const wire = rrs.map(ownerlessRecord);
          const records = wire.every((w): w is Buffer => w !== undefined) ? wire : [];
          for (const u of l.udp) u.setAnswer(key, records);
        }
      }
    }
  }

  /** The answer records for a local lookup that has some; undefined otherwise. */
  private localAnswers(found: Lookup, qname: string): Rr[] | undefined {
    if (found.kind === 'answer') return found.addresses.map((a) => ({ type: a.includes(':') ? 'AAAA' : 'A', name: qname, ttl: this.ttl, data: a }) as Rr);
    if (found.kind === 'ptr') return found.names.map((n) => ({ type: 'PTR', name: qname, ttl: this.ttl, data: `${normalize(n)}.${this.opts.records.domain}` }) as Rr);
    return undefined;
  }

  private bindTcp(l: Listening, addr: string, port: number): Promise<Server> {
    return new Promise((resolve, reject) => {
      const srv = createServer((conn) => this.onTcp(l, conn));
      srv.maxConnections = this.opts.maxTcpConnections ?? 256;
      srv.once('error', reject);
      srv.listen({ host: addr, port, exclusive: true, ipv6Only: addr.includes(':') }, () => {
        srv.off('error', reject);
        resolve(srv);
      });
    });
  }

  private onTcp(l: Listening, conn: TcpSocket): void {
    l.conns.add(conn);
    conn.setTimeout(10_000, () => conn.destroy());
    conn.on('close', () => l.conns.delete(conn));
    conn.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let busy = Promise.resolve();
    conn.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 70_000) return conn.destroy(); // more than any one message can be
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        // Answer in order on one connection.
        busy = busy.then(async () => {
          const out = await this.answer(l, msg, conn.remoteAddress ?? '', 'tcp');
          if (out && !conn.destroyed) conn.write(frame(out));
          else if (!out) conn.destroy();
        });
      }
    });
  }

  private clientAllowed(l: Listening, address: string): boolean {
    // Clients repeat: remember the verdict per address (bounded) instead of parsing every query.
    const known = l.allowed.get(address);
    if (known !== undefined) return known;
    const ip = address.startsWith('::ffff:') ? address.slice(7) : address;
    let ok = false;
    try {
      const { family, value } = ipToBig(ip);
      ok = l.subnets.some((s) => containsIp(s, family, value));
    } catch {
      ok = false;
    }
    if (l.allowed.size > 4096) l.allowed.clear();
    l.allowed.set(address, ok);
    return ok;
  }

  /** Builds the reply to one message, or undefined to drop it. Exposed for protocol tests. */
  async answer(l: Listening, msg: Buffer, client: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const observe = this.opts.observe;
    if (!observe) return this.respond(l, msg, client, transport);
    const t0 = process.hrtime.bigint();
    const seen: { outcome: DnsOutcome } = { outcome: 'error' };
    try {
      return await this.respond(l, msg, client, transport, seen);
    } finally {
      observe(Number(process.hrtime.bigint() - t0) / 1e9, seen.outcome);
    }
  }

  /** Counts how a query was answered, in the totals and for this query's observer. */
  private tally(seen: { outcome: DnsOutcome } | undefined, outcome: Exclude<DnsOutcome, 'error'>): void {
    this.counts[outcome]++;
    if (seen) seen.outcome = outcome;
  }

  private async respond(l: Listening, msg: Buffer, client: string, transport: 'udp' | 'tcp', seen?: { outcome: DnsOutcome }): Promise<Buffer | undefined> {
    this.counts.queries++;
    let q: Decoded;
    try {
      q = decode(msg);
    } catch {
      this.tally(seen, 'dropped');
      return undefined; // malformed: nothing to answer safely
    }
    if (q.flag_qr || q.type === 'response') {
      this.tally(seen, 'dropped');
      return undefined;
    }
    const clientOpt = (q.additionals ?? []).find((a) => a.type === 'OPT');
    const reply = (rcode: Rcode, answers: Rr[] = [], authorities: Rr[] = [], aa = false): Buffer => {
      const flags = (q.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) | dnsPacket.RECURSION_AVAILABLE | (aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | RCODE[rcode];
      const limit = transport === 'tcp' ? 65535 : clientOpt ? Math.max(512, Math.min(clientOpt.udpPayloadSize ?? 512, OUR_UDP_SIZE)) : 512;
      return encodeResponse({ id: q.id ?? 0, flags, questions: q.questions ?? [], ...(clientOpt ? { udpPayloadSize: OUR_UDP_SIZE } : {}) }, answers, authorities, limit);
    };
    if (!this.clientAllowed(l, client)) {
      this.tally(seen, 'refused');
      return reply('REFUSED');
    }
    if (q.opcode && q.opcode !== 'QUERY') return reply('NOTIMP');
    const question = q.questions?.[0];
    if (!question || (q.questions?.length ?? 0) !== 1) return reply('FORMERR');

    const domain = this.opts.records.domain;
    const soa: Rr = {
      type: 'SOA', name: domain, ttl: this.ttl,
      data: { mname: `ns.${domain}`, rname: `hostmaster.${domain}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: this.ttl },
    } as Rr;
    const found = this.opts.records.lookup(l.net.id, question.name, question.type);
    switch (found.kind) {
      case 'answer':
      case 'ptr':
        this.tally(seen, 'local');
        return reply('NOERROR', this.localAnswers(found, question.name), [], true);
      case 'nodata':
        this.tally(seen, 'local');
        return reply('NOERROR', [], [soa], true);
      case 'nxdomain':
        this.tally(seen, 'local');
        return reply('NXDOMAIN', [], [soa], true);
      case 'foreign': {
        if (l.net.internal) {
          this.tally(seen, 'refused');
          return reply('REFUSED');
        }
        this.tally(seen, 'forwarded');
        const a = await this.opts.forwarder.resolve({ name: question.name, type: question.type, class: question.class ?? 'IN' });
        const rcode = (a.rcode in RCODE ? a.rcode : 'SERVFAIL') as Rcode;
        return reply(rcode, a.answers, a.authorities);
      }
    }
  }

  /** The listening state of a network, for protocol tests that call answer() directly. */
  listening(id: string): Listening | undefined {
    return this.nets.get(id);
  }
}
