import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Ipam } from '../../ipam/ipam.js';
import { parseSubnet } from '../../ipam/subnet.js';
import { memoryStore } from '../../store/sqlite-store.js';

const fresh = (opts: ConstructorParameters<typeof Ipam>[1] = {}) => new Ipam(memoryStore(), opts);

describe('pools', () => {
  it('explicit subnet, gateway first, then addresses in order', async () => {
    const ipam = fresh();
    const p = await ipam.requestPool({ pool: '10.10.0.0/24' });
    expect(p.subnet).toBe('10.10.0.0/24');
    expect(await ipam.requestAddress(p.id, { owner: 'net', kind: 'gateway' })).toBe('10.10.0.1/24');
    expect(await ipam.requestAddress(p.id, { owner: 'a' })).toBe('10.10.0.2/24');
    expect(await ipam.requestAddress(p.id, { owner: 'b' })).toBe('10.10.0.3/24');
  });

  it('refuses host bits, bad CIDRs, family mismatch and ranges outside the subnet, each clearly', async () => {
    const ipam = fresh();
    await expect(ipam.requestPool({ pool: '10.10.0.5/24' })).rejects.toMatchObject({ netCode: 'INVALID_ARGUMENT', message: expect.stringMatching(/10\.10\.0\.0\/24/) });
    await expect(ipam.requestPool({ pool: '10.10.0.0/33' })).rejects.toMatchObject({ netCode: 'INVALID_ARGUMENT' });
    await expect(ipam.requestPool({ pool: 'banana' })).rejects.toMatchObject({ netCode: 'INVALID_ARGUMENT' });
    await expect(ipam.requestPool({ pool: 'fd00::/64' })).rejects.toMatchObject({ netCode: 'INVALID_ARGUMENT' });
    await expect(ipam.requestPool({ pool: '10.10.0.0/24', subPool: '10.11.0.0/25' })).rejects.toMatchObject({ netCode: 'INVALID_ARGUMENT' });
    expect(await ipam.listPools()).toEqual([]);
  });

  it('overlap is an error; the same request again is reference-counted', async () => {
    const ipam = fresh();
    const a = await ipam.requestPool({ pool: '10.20.0.0/16' });
    await expect(ipam.requestPool({ pool: '10.20.5.0/24' })).rejects.toMatchObject({ netCode: 'POOL_OVERLAP' });
    const again = await ipam.requestPool({ pool: '10.20.0.0/16' });
    expect(again.id).toBe(a.id);
    expect(again.refs).toBe(2);
    expect((await ipam.releasePool(a.id)).released).toBe(false);
    expect((await ipam.releasePool(a.id)).released).toBe(true);
    expect(await ipam.getPool(a.id)).toBeUndefined();
    expect((await ipam.releasePool(a.id)).released).toBe(false); // idempotent
    // Requested twice, freed at once when its requesters are known to be gone.
    const b = await ipam.requestPool({ pool: '10.21.0.0/16' });
    await ipam.requestPool({ pool: '10.21.0.0/16' });
    expect((await ipam.releasePool(b.id, { everyRef: true })).released).toBe(true);
    expect(await ipam.getPool(b.id)).toBeUndefined();
  });

  it('default pools follow Docker’s list, skip host networks and pools in use, and rotate', async () => {
    const ipam = fresh({ hostNetworks: async () => ['172.17.0.0/16', '172.19.5.0/24'] });
    const a = await ipam.requestPool({});
    expect(a.subnet).toBe('172.18.0.0/16'); // 172.17 is on the host
    const b = await ipam.requestPool({});
    expect(b.subnet).toBe('172.20.0.0/16'); // 172.19 overlaps a host route
    await ipam.releasePool(a.id);
    const c = await ipam.requestPool({});
    expect(c.subnet).toBe('172.21.0.0/16'); // the just-freed 172.18 is not reused at once
  });

  it('default pools run out with a clear error', async () => {
    const ipam = fresh({ defaultPools4: [{ base: '10.99.0.0/23', size: 24 }] });
    await ipam.requestPool({});
    await ipam.requestPool({});
    await expect(ipam.requestPool({})).rejects.toMatchObject({ netCode: 'POOL_EXHAUSTED', message: expect.stringMatching(/--subnet/) });
  });

  it('IPv6 default pools are /64s from a ULA prefix', async () => {
    const ipam = fresh();
    const p = await ipam.requestPool({ v6: true });
    expect(p.subnet).toBe('fd74:736e:6574::/64');
    expect(await ipam.requestAddress(p.id, { owner: 'g', kind: 'gateway' })).toBe('fd74:736e:6574::1/64');
  });

  it('releasing a pool frees what it still holds and reports it', async () => {
    const logs: unknown[] = [];
    const ipam = fresh({ log: (m, f) => logs.push([m, f]) });
    const p = await ipam.requestPool({ pool: '10.30.0.0/24' });
    await ipam.requestAddress(p.id, { owner: 'x' });
    const r = await ipam.releasePool(p.id);
    expect(r.freed.map((a) => a.ip)).toEqual(['10.30.0.1']);
    expect(logs).toHaveLength(1);
    expect(await ipam.listAddresses(p.id)).toEqual([]);
  });
});

describe('addresses', () => {
  it('static, aux and ip-range: dynamic stays in the range, static and aux anywhere in the subnet', async () => {
    const ipam = fresh();
    const p = await ipam.requestPool({ pool: '10.40.0.0/24', subPool: '10.40.0.128/30' });
    expect(await ipam.requestAddress(p.id, { owner: 'gw', kind: 'gateway' })).toBe('10.40.0.128/24');
    expect(await ipam.requestAddress(p.id, { owner: 'aux', kind: 'aux', address: '10.40.0.5' })).toBe('10.40.0.5/24');
    expect(await ipam.requestAddress(p.id, { owner: 'st', address: '10.40.0.10' })).toBe('10.40.0.10/24');
    expect(await ipam.requestAddress(p.id, { owner: 'd1' })).toBe('10.40.0.129/24');
    expect(await ipam.requestAddress(p.id, { owner: 'd2' })).toBe('10.40.0.130/24');
    expect(await ipam.requestAddress(p.id, { owner: 'd3' })).toBe('10.40.0.131/24');
    await expect(ipam.requestAddress(p.id, { owner: 'd4' })).rejects.toMatchObject({ netCode: 'POOL_EXHAUSTED' });
  });

  it('distinct errors: taken, outside, network, broadcast, unknown pool', async () => {
    const ipam = fresh();
    const p = await ipam.requestPool({ pool: '10.50.0.0/24' });
    await ipam.requestAddress(p.id, { owner: 'a', address: '10.50.0.7' });
    await expect(ipam.requestAddress(p.id, { owner: 'b', address: '10.50.0.7' })).rejects.toMatchObject({ netCode: 'ADDRESS_IN_USE' });
    await expect(ipam.requestAddress(p.id, { owner: 'b', address: '10.51.0.7' })).rejects.toMatchObject({ netCode: 'ADDRESS_OUT_OF_RANGE' });
    await expect(ipam.requestAddress(p.id, { owner: 'b', address: '10.50.0.0' })).rejects.toMatchObject({ netCode: 'ADDRESS_OUT_OF_RANGE' });
    await expect(ipam.requestAddress(p.id, { owner: 'b', address: '10.50.0.255' })).rejects.toMatchObject({ netCode: 'ADDRESS_OUT_OF_RANGE' });
    await expect(ipam.requestAddress('nope', { owner: 'b' })).rejects.toMatchObject({ netCode: 'NOT_FOUND' });
    // The same owner asking again for its own address is a retry, not a conflict.
    expect(await ipam.requestAddress(p.id, { owner: 'a', address: '10.50.0.7' })).toBe('10.50.0.7/24');
  });

  it('/31 and /32 use every address', async () => {
    const ipam = fresh();
    const p31 = await ipam.requestPool({ pool: '10.60.0.0/31' });
    expect(await ipam.requestAddress(p31.id, { owner: 'a' })).toBe('10.60.0.0/31');
    expect(await ipam.requestAddress(p31.id, { owner: 'b' })).toBe('10.60.0.1/31');
    const p32 = await ipam.requestPool({ pool: '10.61.0.9/32' });
    expect(await ipam.requestAddress(p32.id, { owner: 'c' })).toBe('10.61.0.9/32');
  });

  it('next free after the last handed out, wrapping: a just-released address is not reused at once', async () => {
    const ipam = fresh();
    const p = await ipam.requestPool({ pool: '10.70.0.0/29' }); // usable .1–.6
    const got = [];
    for (let i = 0; i < 6; i++) got.push(await ipam.requestAddress(p.id, { owner: `o${i}` }));
    expect(got.at(-1)).toBe('10.70.0.6/29');
    await ipam.releaseAddress(p.id, '10.70.0.2');
    await ipam.releaseAddress(p.id, '10.70.0.5');
    expect(await ipam.requestAddress(p.id, { owner: 'n1' })).toBe('10.70.0.2/29'); // wraps past .6
    expect(await ipam.requestAddress(p.id, { owner: 'n2' })).toBe('10.70.0.5/29');
    expect(await ipam.releaseAddress(p.id, '10.70.0.5')).toBe(true);
    expect(await ipam.releaseAddress(p.id, '10.70.0.5')).toBe(false); // idempotent
  });

  it('IPv6: huge pools allocate without sizing anything by the pool', async () => {
    const ipam = fresh();
    const p = await ipam.requestPool({ pool: 'fd00:1::/48', v6: true });
    expect(await ipam.requestAddress(p.id, { owner: 'a' })).toBe('fd00:1::1/48');
    expect(await ipam.requestAddress(p.id, { owner: 'b', address: 'fd00:1:0:ffff:ffff:ffff:ffff:ffff' })).toBe('fd00:1:0:ffff:ffff:ffff:ffff:ffff/48');
    expect(await ipam.requestAddress(p.id, { owner: 'c' })).toBe('fd00:1::2/48');
  });

  it('gc frees endpoint allocations of owners that are gone, and only those', async () => {
    const ipam = fresh();
    const p = await ipam.requestPool({ pool: '10.80.0.0/24' });
    await ipam.requestAddress(p.id, { owner: 'net', kind: 'gateway' });
    await ipam.requestAddress(p.id, { owner: 'alive' });
    await ipam.requestAddress(p.id, { owner: 'dead1' });
    await ipam.requestAddress(p.id, { owner: 'dead2' });
    const freed = await ipam.gc(new Set(['alive']));
    expect(freed.map((f) => f.owner).sort()).toEqual(['dead1', 'dead2']);
    expect(freed[0]!.pool).toBe(p.id);
    expect((await ipam.listAddresses(p.id)).map((a) => a.owner).sort()).toEqual(['alive', 'net']);
  });
});

describe('property: random interleavings never break the allocator', () => {
  it('no duplicates, no reserved addresses, and the store equals the model', async () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('req' as const), pool: fc.nat(1) }),
      fc.record({ t: fc.constant('static' as const), pool: fc.nat(1), host: fc.integer({ min: 0, max: 15 }) }),
      fc.record({ t: fc.constant('rel' as const), pool: fc.nat(1), pick: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 80 }), async (ops) => {
        const ipam = fresh();
        const pools = [
          await ipam.requestPool({ pool: '10.1.0.0/28' }),
          await ipam.requestPool({ pool: '10.2.0.0/28', subPool: '10.2.0.8/29' }),
        ];
        const aux = ['10.1.0.3', '10.2.0.9'];
        await ipam.requestAddress(pools[0]!.id, { owner: 'aux', kind: 'aux', address: aux[0] });
        await ipam.requestAddress(pools[1]!.id, { owner: 'aux', kind: 'aux', address: aux[1] });
        const model = pools.map(() => new Map<string, string>());
        let n = 0;
        for (const o of ops) {
          const p = pools[o.pool]!;
          const m = model[o.pool]!;
          try {
            if (o.t === 'req') {
              const ip = (await ipam.requestAddress(p.id, { owner: `o${n++}` })).split('/')[0]!;
              expect(m.has(ip)).toBe(false);
              expect(aux).not.toContain(ip);
              m.set(ip, 'x');
            } else if (o.t === 'static') {
              const ip = `${p.subnet.split('.').slice(0, 3).join('.')}.${o.host}`;
              const got = (await ipam.requestAddress(p.id, { owner: `s${n++}`, address: ip })).split('/')[0]!;
              expect(m.has(got)).toBe(false);
              m.set(got, 'x');
            } else if (m.size > 0) {
              const ip = [...m.keys()][o.pick % m.size]!;
              expect(await ipam.releaseAddress(p.id, ip)).toBe(true);
              m.delete(ip);
            }
          } catch (e) {
            const code = (e as { netCode?: string }).netCode;
            expect(['POOL_EXHAUSTED', 'ADDRESS_IN_USE', 'ADDRESS_OUT_OF_RANGE']).toContain(code);
          }
          for (const [i, pool] of pools.entries()) {
            const held = (await ipam.listAddresses(pool.id)).filter((a) => a.kind !== 'aux').map((a) => a.ip).sort();
            expect(held).toEqual([...model[i]!.keys()].sort());
            const s = parseSubnet(pool.subnet);
            for (const ip of held) expect(ip).not.toBe(s.cidr.split('/')[0]); // never the network address
            expect(held).not.toContain(pool.subnet.replace(/\.0\/28$/, '.15')); // never broadcast
          }
        }
      }),
      { numRuns: 60 },
    );
  }, 60_000);
});

describe('group commit', () => {
  it('concurrent callers share commits, each body atomic on its own: one failure does not undo the others', async () => {
    const store = memoryStore();
    const ipam = new Ipam(store);
    const p = await ipam.requestPool({ pool: '10.90.0.0/24' });
    await ipam.requestAddress(p.id, { owner: 'x', address: '10.90.0.9' });
    const results = await Promise.allSettled([
      ipam.requestAddress(p.id, { owner: 'a' }),
      ipam.requestAddress(p.id, { owner: 'b', address: '10.90.0.9' }), // taken: this one fails
      store.transact((tx) => {
        tx.put('scratch/1', 1);
        throw new Error('body failed after writing');
      }),
      ipam.requestAddress(p.id, { owner: 'c' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((results[0] as PromiseFulfilledResult<string>).value).toBe('10.90.0.1/24');
    expect((results[3] as PromiseFulfilledResult<string>).value).toBe('10.90.0.2/24');
    expect(await store.read((tx) => tx.get('scratch/1'))).toBeUndefined();
    expect((await ipam.listAddresses(p.id)).map((a) => a.owner).sort()).toEqual(['a', 'c', 'x']);
  });
});

describe('store location', () => {
  it('creates missing parent directories, and fails (not hangs) on an impossible one', async () => {
    const { mkdtempSync, rmSync, statSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { SqliteStore } = await import('../../store/sqlite-store.js');
    const dir = mkdtempSync(join(tmpdir(), 'tsnt-loc-'));
    try {
      const s = new SqliteStore(join(dir, 'a', 'b', 'tsnet.db'));
      expect(statSync(join(dir, 'a', 'b', 'tsnet.db')).mode & 0o777).toBe(0o600);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => new SqliteStore('/proc/tsnet-not-here/tsnet.db')).toThrow();
  });
});
