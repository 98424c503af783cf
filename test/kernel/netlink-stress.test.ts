// Resource discipline of the binding: no fd or link leaks over thousands of cycles, and correct
// results under heavy parallelism across many namespaces.

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NetlinkHandle } from '../../kernel/netlink.js';
import { createNetns, deleteNetns } from '../../kernel/netns.js';
import { cleanNamespacesAfterEach, makeNs } from '../helpers/netns.js';
import { ipJson, isRoot, linkNames, uniqueName } from '../helpers/sys.js';

const fdCount = (): number => readdirSync('/proc/self/fd').length;
/** Threads of this process: every handle has a thread of its own (its lane) while it is open. */
const threadCount = (): number => readdirSync('/proc/self/task').length;

describe.skipIf(!isRoot)('netlink binding under load', () => {
  cleanNamespacesAfterEach();

  it('5,000 veth create/delete cycles leave the fd count and the link table as they were', async () => {
    const host = makeNs('lk');
    const cont = makeNs('lc');
    const nl = await NetlinkHandle.open({ path: host.path });
    const ns = { path: cont.path };
    const linksBefore = linkNames(host.name).sort();
    const contBefore = linkNames(cont.name).sort();
    // Warm up once so lazily opened fds (the addon itself, libuv) are counted in the baseline.
    await nl.linkAdd({ kind: 'veth', name: 'leak-h', peer: { name: 'leak-c', netns: ns } });
    await nl.linkDel({ name: 'leak-h' });
    const fdsBefore = fdCount();
    const threadsBefore = threadCount();
    // Deleting a link waits for RCU grace periods in the kernel (~15 ms each, outside the RTNL
    // lock), so four workers on their own handles (libuv's pool size) share the 5,000 cycles.
    const workers = await Promise.all(Array.from({ length: 4 }, () => NetlinkHandle.open({ path: host.path })));
    await Promise.all(workers.map(async (h, w) => {
      for (let i = 0; i < 1250; i++) {
        await h.linkAdd({ kind: 'veth', name: `leak-h${w}`, peer: { name: `leak-c${w}`, netns: ns } });
        await h.linkDel({ name: `leak-h${w}` });
      }
    }));
    expect(threadCount()).toBeGreaterThanOrEqual(threadsBefore + 4); // one lane per open handle
    await Promise.all(workers.map((h) => h.close()));
    expect(fdCount()).toBe(fdsBefore);
    expect(threadCount()).toBe(threadsBefore);
    expect(linkNames(host.name).sort()).toEqual(linksBefore);
    expect(linkNames(cont.name).sort()).toEqual(contBefore);
    await nl.close();
  }, 180_000);

  it('opening and closing 2,000 handles leaks no fds and no threads', async () => {
    const host = makeNs('hk');
    await (await NetlinkHandle.open({ path: host.path })).close();
    const before = fdCount();
    const threadsBefore = threadCount();
    for (let i = 0; i < 2000; i++) {
      const h = await NetlinkHandle.open({ path: host.path });
      if (i % 2) await h.linkGet({ name: 'lo' }); // half of them used once
      await h.close();
    }
    expect(fdCount()).toBe(before);
    expect(threadCount()).toBe(threadsBefore);
  });

  it('closing a handle with exchanges queued settles every one of them and hangs nothing', async () => {
    const host = makeNs('hq');
    const threadsBefore = threadCount();
    const h = await NetlinkHandle.open({ path: host.path });
    const gets = Array.from({ length: 50 }, () => h.linkGet({ name: 'lo' }));
    await h.close();
    // Whatever had reached the kernel is answered; whatever was still queued behind close is
    // refused as closed. Nothing is left pending (the test would time out).
    const settled = await Promise.allSettled(gets);
    for (const s of settled) {
      if (s.status === 'fulfilled') expect(s.value.name).toBe('lo');
      else expect(String(s.reason)).toMatch(/closed/);
    }
    await expect(h.linkGet({ name: 'lo' })).rejects.toThrow(/closed/);
    expect(threadCount()).toBe(threadsBefore);
  });

  it('100 parallel veth creations into 100 namespaces all succeed and are all correct', async () => {
    const host = makeNs('ph');
    const names = Array.from({ length: 100 }, (_, i) => `${uniqueName('p')}${i}`.slice(0, 15));
    const refs = await Promise.all(names.map((n) => createNetns(n)));
    try {
      await Promise.all(refs.map(async (ref, i) => {
        // Each worker has its own handle in the host namespace and one in its container namespace.
        await using h = await NetlinkHandle.open({ path: host.path });
        await h.linkAdd({ kind: 'veth', name: `pv${i}`, peer: { name: 'eth0', netns: ref } });
        await h.linkSetUp({ name: `pv${i}` });
        await using c = await NetlinkHandle.open(ref);
        await c.addrAdd({ name: 'eth0' }, `10.100.${i}.2/24`);
        await c.linkSetUp({ name: 'eth0' });
      }));
      const hostLinks = linkNames(host.name);
      for (let i = 0; i < 100; i++) {
        expect(hostLinks).toContain(`pv${i}`);
        const addrs = ipJson<any[]>(names[i], 'addr', 'show', 'dev', 'eth0')[0].addr_info;
        expect(addrs.find((a: any) => a.family === 'inet').local).toBe(`10.100.${i}.2`);
      }
    } finally {
      await Promise.all(refs.map((r) => deleteNetns(r)));
    }
  }, 120_000);
});
