// The store shared by separate processes, and killed at random instants.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ipam, type AllocationRecord } from '../../ipam/ipam.js';
import { SqliteStore } from '../../store/sqlite-store.js';

const WORKER = new URL('./alloc-worker.mjs', import.meta.url).pathname;

function runWorker(db: string, pool: string, count: number, tag: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [WORKER, db, pool, String(count), tag], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? resolve(out.trim().split('\n')) : reject(new Error(`worker exited ${code}: ${err}`))));
  });
}

describe('store shared between processes', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsnt-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('two processes hammering one pool (1,000 allocations each) end with 2,000 distinct addresses', async () => {
    const db = join(dir, 'state.db');
    const store = new SqliteStore(db);
    const pool = await new Ipam(store).requestPool({ pool: '10.128.0.0/16' });
    const [a, b] = await Promise.all([runWorker(db, pool.id, 1000, 'a'), runWorker(db, pool.id, 1000, 'b')]);
    const all = [...a, ...b];
    expect(all).toHaveLength(2000);
    expect(new Set(all).size).toBe(2000);
    const stored = await new Ipam(store).listAddresses(pool.id);
    expect(stored).toHaveLength(2000);
    expect(new Set(stored.map((s) => `${s.ip}/16`))).toEqual(new Set(all));
    await store.close();
  }, 60_000);

  it('kill -9 at random points, 50 times: the store always opens consistent', async () => {
    const db = join(dir, 'state.db');
    const setup = new SqliteStore(db);
    const pool = await new Ipam(setup).requestPool({ pool: '10.129.0.0/16' });
    await setup.close();
    let printedTotal = 0;
    for (let round = 0; round < 50; round++) {
      const child = spawn(process.execPath, [WORKER, db, pool.id, '100000', `k${round}`], { stdio: ['ignore', 'pipe', 'ignore'] });
      let printed = 0;
      child.stdout.on('data', (d: Buffer) => (printed += d.toString().split('\n').length - 1));
      // Wait until it is allocating, then kill it at a random instant.
      await new Promise((r) => child.stdout.once('data', r));
      await new Promise((r) => setTimeout(r, Math.random() * 60));
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      printedTotal += printed;

      const raw = new Database(db);
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      raw.close();
      const store = new SqliteStore(db);
      const rows = await store.read((tx) => tx.list<AllocationRecord>('ipam/addr/'));
      const cursor = await store.read((tx) => tx.get<string>(`ipam/cursor/${pool.id}`));
      // Every allocation record sits under the key of its own address and names an owner.
      for (const [key, a] of rows) {
        expect(key.endsWith(Buffer.from(a.ip.split('.').map(Number)).toString('hex'))).toBe(true);
        expect(a.owner).toMatch(/^k\d+-\d+$/);
      }
      // Every address a worker reported as allocated is in the store (a commit is never lost to a kill),
      // and the pool's cursor points at an address that is allocated.
      expect(rows.length).toBeGreaterThanOrEqual(printedTotal);
      expect(rows.some(([k]) => k.endsWith(`/${cursor}`))).toBe(true);
      await store.close();
    }
  }, 120_000);
});

describe('IPv6 pools at scale', () => {
  it.each(['fd00:64::/64', 'fd00:48::/48'])('allocates 100,000 addresses from %s with flat memory', async (cidr) => {
    const store = new SqliteStore(':memory:');
    const ipam = new Ipam(store);
    const pool = await ipam.requestPool({ pool: cidr, v6: true });
    let rssAt10k = 0;
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      const ip = await ipam.requestAddress(pool.id, { owner: `o${i}` });
      if (i % 9973 === 0) seen.add(ip);
      if (i === 10_000) rssAt10k = process.memoryUsage().rss;
    }
    // 90,000 more records in an in-memory SQLite cost a few MB; a bitmap of a /64 would not fit at all.
    expect(process.memoryUsage().rss - rssAt10k).toBeLessThan(64 * 1024 * 1024);
    expect(seen.size).toBe(11);
    expect(await store.read((tx) => tx.count(`ipam/addr/`))).toBe(100_000);
    await store.close();
  }, 120_000);
});
