// Forwards what we do not answer ourselves to upstream resolvers: one UDP socket per family,
// identical in-flight queries coalesced, a bound on queries in flight, TCP when an upstream
// truncates, each upstream tried in turn with a timeout, answers cached.

import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isIPv6 } from 'node:net';
import { dnsPacket, decode, type Decoded } from './wire.js';
import { AnswerCache, type CachedAnswer } from './cache.js';

export interface Question {
  name: string;
  type: string;
  class?: string;
}

export interface ForwarderOptions {
  /** Upstream servers; when absent, the nameservers of resolvConf, re-read when it changes. */
  servers?: string[];
  resolvConf?: string;
  timeoutMs?: number;
  maxInFlight?: number;
  cache?: AnswerCache;
  port?: number;
}

interface Pending {
  resolve: (p: Decoded) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  question: Question;
}

/** TCP framing: a 2-byte length before each message. */
export function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** How long a failure is remembered so a flood for a dead name does not flood the upstreams. */
const FAILURE_TTL_S = 2;

export class Forwarder {
  readonly cache: AnswerCache;
  private sockets = new Map<4 | 6, Socket>();
  private readonly pending = new Map<number, Pending>();
  private readonly inFlight = new Map<string, Promise<CachedAnswer>>();
  private resolvMtime = 0;
  private resolvServers: string[] = [];
  private resolvCheckedAt = 0;
  upstreamFailures = 0;
  cacheHits = 0;
  cacheMisses = 0;

  constructor(private readonly opts: ForwarderOptions = {}) {
    this.cache = opts.cache ?? new AnswerCache();
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  async servers(): Promise<string[]> {
    if (this.opts.servers) return this.opts.servers;
    const path = this.opts.resolvConf ?? '/etc/resolv.conf';
    if (Date.now() - this.resolvCheckedAt < 1000) return this.resolvServers;
    this.resolvCheckedAt = Date.now();
    const st = await stat(path).catch(() => undefined);
    if (st && st.mtimeMs !== this.resolvMtime) {
      this.resolvMtime = st.mtimeMs;
      const text = await readFile(path, 'utf8').catch(() => '');
      this.resolvServers = [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]!.split('%')[0]!);
    }
    return this.resolvServers;
  }

  /** Resolves through cache and upstreams. Rejects with 'SERVFAIL' semantics on overload or failure. */
  resolve(q: Question): Promise<CachedAnswer> {
    const key = AnswerCache.key(q.name, q.type, q.class);
    const hit = this.cache.get(key);
    if (hit) {
      this.cacheHits++;
      return Promise.resolve(hit);
    }
    this.cacheMisses++;
    const running = this.inFlight.get(key);
    if (running) return running;
    if (this.inFlight.size >= (this.opts.maxInFlight ?? 1024)) {
      return Promise.resolve({ rcode: 'SERVFAIL', answers: [], authorities: [] });
    }
    const p = this.ask(q)
      .then((pkt) => {
        const a: CachedAnswer = { rcode: pkt.rcode ?? 'NOERROR', answers: pkt.answers ?? [], authorities: pkt.authorities ?? [] };
        this.cache.set(key, a);
        return a;
      })
      .catch(() => {
        this.upstreamFailures++;
        const a: CachedAnswer = { rcode: 'SERVFAIL', answers: [], authorities: [] };
        this.cache.set(key, a, FAILURE_TTL_S);
        return a;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, p);
    return p;
  }

  private async ask(q: Question): Promise<Decoded> {
    const servers = await this.servers();
    if (!servers.length) throw new Error('no upstream resolvers');
    let last: Error = new Error('no answer');
    for (const server of servers) {
      try {
        const pkt = await this.askUdp(server, q);
        if (pkt.flag_tc) return await this.askTcp(server, q);
        return pkt;
      } catch (e) {
        last = e as Error;
      }
    }
    throw last;
  }

  private socket(family: 4 | 6): Socket {
    let s = this.sockets.get(family);
    if (!s) {
      s = createSocket(family === 4 ? 'udp4' : 'udp6');
      s.on('message', (msg) => this.onReply(msg));
      s.on('error', () => undefined);
      s.unref();
      this.sockets.set(family, s);
    }
    return s;
  }

  private onReply(msg: Buffer): void {
    let pkt: Decoded;
    try {
      pkt = decode(msg);
    } catch {
      return;
    }
    const p = this.pending.get(pkt.id ?? -1);
    const q = pkt.questions?.[0];
    // A reply must echo our question: guards against stray or spoofed packets.
    if (!p || !q || q.name.toLowerCase() !== p.question.name.toLowerCase() || q.type !== p.question.type) return;
    this.pending.delete(pkt.id!);
    clearTimeout(p.timer);
    p.resolve(pkt);
  }

  private query(id: number, q: Question): Buffer {
    return dnsPacket.encode({
      type: 'query', id, flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: q.name, type: q.type as dnsPacket.RecordType, class: (q.class ?? 'IN') as 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as dnsPacket.Answer],
    });
  }

  private askUdp(server: string, q: Question): Promise<Decoded> {
    return new Promise((resolve, reject) => {
      let id = randomInt(0, 65536);
      for (let i = 0; this.pending.has(id) && i < 100; i++) id = randomInt(0, 65536);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`upstream ${server} timed out`));
      }, this.opts.timeoutMs ?? 2000);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer, question: q });
      this.socket(isIPv6(server) ? 6 : 4).send(this.query(id, q), this.opts.port ?? 53, server, (err) => {
        if (err) {
          clearTimeout(timer);
          this.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  private askTcp(server: string, q: Question): Promise<Decoded> {
    return new Promise((resolve, reject) => {
      const sock = connect({ host: server, port: this.opts.port ?? 53 });
      const timer = setTimeout(() => sock.destroy(new Error(`upstream ${server} timed out (TCP)`)), this.opts.timeoutMs ?? 2000);
      let buf = Buffer.alloc(0);
      sock.on('connect', () => sock.write(frame(this.query(randomInt(0, 65536), q))));
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          clearTimeout(timer);
          sock.end();
          try {
            resolve(decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
          } catch (e) {
            reject(e as Error);
          }
        }
      });
      sock.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  close(): void {
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('forwarder closed'));
    }
    this.pending.clear();
  }
}
