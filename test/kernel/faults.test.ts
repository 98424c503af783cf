// Faults in the middle of a mutation: the disk holding the state fills up, and a netlink call
// fails because a name was taken behind our back. Clear errors, nothing half-made.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetworkService } from '../../core/network-service.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import { SqliteStore } from '../../store/sqlite-store.js';
import { makeNs, removeNs, type TestNs } from '../helpers/netns.js';
import { isRoot, run } from '../helpers/sys.js';
import { noFirewall, silentLog } from '../helpers/fakes.js';

const links = (ns: TestNs): string[] => run('ip', ['-n', ns.name, '-o', 'link', 'show']).trim().split('\n').map((l) => l.split(': ')[1]!.split('@')[0]!);

describe.skipIf(!isRoot)('faults mid-operation', () => {
  let ns: TestNs;
  let host: NetlinkHandle;
  let dir: string;

  beforeEach(async () => {
    ns = makeNs('ft');
    host = await NetlinkHandle.open({ path: ns.path });
    dir = mkdtempSync(join(tmpdir(), 'tsnt-fault-'));
  });
  afterEach(async () => {
    await host.close();
    removeNs(ns);
    run('umount', [dir], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('a full disk: the call fails with a clear error and leaves no link; things work again once there is room', async () => {
    // A small filesystem of its own for the state (tmpfs: no loop device needed).
    run('mount', ['-t', 'tmpfs', '-o', 'size=600k', 'tsnt-state', dir]);
    const store = new SqliteStore(join(dir, 'tsnet.db'));
    const svc = new NetworkService(store, { host, firewall: noFirewall as never, log: silentLog });
    try {
      await svc.createNetwork({ id: 'n1'.padEnd(64, '0'), ipv4: [{ subnet: '10.93.0.0/24', gateway: '10.93.0.1/24' }], ipv6: [], internal: false, enableIPv6: false, rawOptions: {} });
      const before = links(ns);
      // Fill the rest of the filesystem.
      let i = 0;
      try {
        for (;; i++) writeFileSync(join(dir, `fill-${i}`), Buffer.alloc(16 * 1024));
      } catch {
        // ENOSPC: full
      }
      let err: Error | undefined;
      for (let k = 0; k < 40 && !err; k++) {
        // SQLite may still fit a few small writes in pages it has; keep going until it cannot.
        await svc.createEndpoint({ id: `e${k}`.padEnd(64, '0'), networkId: 'n1'.padEnd(64, '0'), address4: `10.93.0.${k + 2}/24` }).catch((e: Error) => {
          err = e;
        });
      }
      expect(err?.message).toMatch(/full|space/i);
      const made = (await svc.listEndpoints()).map((e) => `tsv${e.id.slice(0, 12)}`);
      // Exactly the recorded endpoints have veths: the failed one left none.
      expect(links(ns).filter((l) => l.startsWith('tsv')).sort()).toEqual(made.sort());
      expect(links(ns).filter((l) => !l.startsWith('tsv') && !l.startsWith('tsc'))).toEqual(before);
      // Room again: the same call succeeds.
      for (let k = 0; k < i; k++) rmSync(join(dir, `fill-${k}`), { force: true });
      await svc.createEndpoint({ id: 'again'.padEnd(64, '0'), networkId: 'n1'.padEnd(64, '0'), address4: '10.93.0.200/24' });
      expect(links(ns)).toContain(`tsv${'again'.padEnd(12, '0')}`);
    } finally {
      await store.close();
    }
  });

  it('a name taken behind our back mid-operation: EEXIST named, the network half is undone', async () => {
    const store = new SqliteStore(join(dir, 'tsnet.db'));
    const svc = new NetworkService(store, { host, firewall: noFirewall as never, log: silentLog });
    try {
      await svc.createNetwork({ id: 'n2'.padEnd(64, '0'), ipv4: [{ subnet: '10.92.0.0/24', gateway: '10.92.0.1/24' }], ipv6: [], internal: false, enableIPv6: false, rawOptions: {} });
      // Someone else creates the container-side name the endpoint is about to use.
      const id = 'f00d'.padEnd(64, '0');
      run('ip', ['-n', ns.name, 'link', 'add', `tsc${id.slice(0, 12)}`, 'type', 'veth', 'peer', 'name', 'tsnt-other']);
      const before = links(ns);
      await expect(svc.createEndpoint({ id, networkId: 'n2'.padEnd(64, '0'), address4: '10.92.0.5/24' })).rejects.toThrow(/EEXIST/);
      expect(links(ns)).toEqual(before); // our host-side veth was not left behind
      expect(await svc.getEndpoint('n2'.padEnd(64, '0'), id)).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
