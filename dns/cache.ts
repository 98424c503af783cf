// Answer cache for forwarded queries: honours TTLs, caches negative answers for the SOA minimum
// (RFC 2308), holds a bounded number of entries (least recently used go first).

import type { Rr } from './wire.js';

export interface CachedAnswer {
  rcode: string;
  answers: Rr[];
  authorities: Rr[];
}

interface Entry extends CachedAnswer {
  storedAt: number;
  expiresAt: number;
}

const MAX_TTL = 86_400;

/** Seconds this response may be cached: min answer TTL, or for negatives the SOA's minimum. */
export function cacheTtl(a: CachedAnswer): number {
  if (a.rcode === 'NOERROR' && a.answers.length) {
    return Math.min(MAX_TTL, ...a.answers.map((r) => r.ttl ?? 0));
  }
  if (a.rcode === 'NXDOMAIN' || (a.rcode === 'NOERROR' && !a.answers.length)) {
    const soa = a.authorities.find((r) => r.type === 'SOA');
    if (!soa) return 0; // without an SOA a negative answer is not cached (RFC 2308 §5)
    const min = (soa.data as { minimum?: number }).minimum ?? 0;
    return Math.min(MAX_TTL, soa.ttl ?? 0, min);
  }
  return 0;
}

export class AnswerCache {
  private readonly map = new Map<string, Entry>();
  hits = 0;
  misses = 0;

  constructor(private readonly maxEntries = 10_000, private readonly now: () => number = Date.now) {}

  static key(name: string, type: string, klass = 'IN'): string {
    return `${name.toLowerCase()}|${type}|${klass}`;
  }

  get(key: string): CachedAnswer | undefined {
    const e = this.map.get(key);
    if (!e) {
      this.misses++;
      return undefined;
    }
    const now = this.now();
    if (now >= e.expiresAt) {
      this.map.delete(key);
      this.misses++;
      return undefined;
    }
    // Refresh recency and hand out TTLs reduced by the time spent in the cache.
    this.map.delete(key);
    this.map.set(key, e);
    this.hits++;
    const elapsed = Math.floor((now - e.storedAt) / 1000);
    const age = (rs: Rr[]): Rr[] => rs.map((r) => ({ ...r, ttl: Math.max(0, (r.ttl ?? 0) - elapsed) }) as Rr);
    return { rcode: e.rcode, answers: age(e.answers), authorities: age(e.authorities) };
  }

  /** Stores for `ttlOverride` seconds, or the answer's own cache TTL. */
  set(key: string, a: CachedAnswer, ttlOverride?: number): void {
    const ttl = ttlOverride ?? cacheTtl(a);
    if (ttl <= 0) return;
    const now = this.now();
    this.map.delete(key);
    this.map.set(key, { ...a, storedAt: now, expiresAt: now + ttl * 1000 });
    while (this.map.size > this.maxEntries) this.map.delete(this.map.keys().next().value!);
  }

  get size(): number {
    return this.map.size;
  }
}
