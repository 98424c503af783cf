// Benchmark: create + configure + delete veth pairs (one end in a namespace, an address, both ends
// up) through the native binding, and the same work through `ip` commands, in the same run.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NetlinkHandle } from '../kernel/netlink.js';
import { createNetns, deleteNetns } from '../kernel/netns.js';
import { sysctlSet } from '../kernel/sysctl.js';
import type { NetnsRef } from '../kernel/types.js';
import type { BenchResult, BenchOptions } from './types.js';

const execFileP = promisify(execFile);
const ip = (...args: string[]): Promise<unknown> => execFileP('ip', args);

const address = (i: number): string => `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`;

/** tsnet: one handle per namespace, as the drivers use them; returns the open handles. */
async function setUpOurs(host: NetnsRef, cont: NetnsRef, pairs: number): Promise<[NetlinkHandle, NetlinkHandle]> {
  const h = await NetlinkHandle.open(host);
  const c = await NetlinkHandle.open(cont);
  for (let i = 0; i < pairs; i++) {
    const name = `bv${i}`;
    // The kernel echoes the new veth with its peer's index, so the address needs no lookup.
    const made = await h.linkAdd({ kind: 'veth', name, peer: { name: `bc${i}`, netns: cont } });
    const peer = made?.parentIndex !== undefined ? { index: made.parentIndex } : { name: `bc${i}` };
    await c.addrAdd(peer, address(i));
    await c.linkSetUp(peer);
    await h.linkSetUp({ name });
  }
  return [h, c];
}

/**
 * The binding creates every veth with one queue each way (kernel/nl/link.ts says why); ip is asked
 * for the same, so both sides leave the kernel the same work.
 */
const ONE_QUEUE = ['numtxqueues', '1', 'numrxqueues', '1'];

/** The link group the batched-delete figures retire links into, on both sides. */
const GROUP = 4242;

/** Anchor: iproute2, one exec per step, the way a shell-script plugin does it. */
async function setUpIp(hn: string, cn: string, pairs: number): Promise<void> {
  for (let i = 0; i < pairs; i++) {
    await ip('-n', hn, 'link', 'add', `bv${i}`, ...ONE_QUEUE, 'type', 'veth', 'peer', 'name', `bc${i}`, ...ONE_QUEUE, 'netns', cn);
    await ip('-n', cn, 'addr', 'add', address(i), 'dev', `bc${i}`);
    await ip('-n', cn, 'link', 'set', `bc${i}`, 'up');
    await ip('-n', hn, 'link', 'set', `bv${i}`, 'up');
  }
}

export async function benchNetlink(opts: BenchOptions): Promise<BenchResult[]> {
  const pairs = opts.quick ? 50 : 1000;
  const tag = `tsnb${process.pid % 10000}`;
  const host = await createNetns(`${tag}h`);
  const cont = await createNetns(`${tag}c`);
  try {
    // IPv6 off in both namespaces, for both sides: the links here carry IPv4 only, and tsnet leaves
    // such links without IPv6 (bridge ends always, IPv4-only container ends too; see
    // drivers/shared/veth.ts). Left on, the kernel's own IPv6 set-up of every link (link-local
    // address, routes, and a walk of the IPv6 table per link at deletion) is what both sides wait
    // for, and how much of it has run by deletion time depends on how fast the client was.
    for (const ns of [host, cont]) {
      for (const scope of ['all', 'default']) await sysctlSet(ns, ['net', 'ipv6', 'conf', scope, 'disable_ipv6'], '1');
    }
    // Warm-up, untimed, for both sides: a daemon's binding code is compiled long before its
    // thousandth attach, and the first execs of ip pay for loading it into the page cache.
    const hn = `${tag}h`;
    const cn = `${tag}c`;
    const warm = Math.min(pairs, 50);
    const [wh, wc] = await setUpOurs(host, cont, warm);
    for (let i = 0; i < warm; i++) await wh.linkDel({ name: `bv${i}` });
    await wh.close();
    await wc.close();
    await setUpIp(hn, cn, 5);
    for (let i = 0; i < 5; i++) await ip('-n', hn, 'link', 'del', `bv${i}`);
    // The warm-up's deletions leave the kernel work to finish after they return (RCU callbacks,
    // the todo list of unregistered devices); it would land on whichever side is timed first.
    await new Promise((r) => setTimeout(r, 1000));

    const t0 = performance.now();
    const [h, c] = await setUpOurs(host, cont, pairs);
    const oursSetupMs = performance.now() - t0;
    for (let i = 0; i < pairs; i++) await h.linkDel({ name: `bv${i}` });
    const oursMs = performance.now() - t0;
    await h.close();
    await c.close();

    const t1 = performance.now();
    await setUpIp(hn, cn, pairs);
    const anchorSetupMs = performance.now() - t1;
    for (let i = 0; i < pairs; i++) await ip('-n', hn, 'link', 'del', `bv${i}`);
    const anchorMs = performance.now() - t1;

    // Near the kernel's own cost: the same work through one `ip -batch` process per namespace, no
    // exec per step. A binding can beat it only by ip's parsing and name lookups, so each figure
    // shows what ratio over exec of ip is within reach on this machine at all.
    const { writeFileSync, rmSync } = await import('node:fs');
    const batchFile = `/tmp/${tag}.batch`;
    const batch = async (ns: string, lines: (i: number) => string): Promise<number> => {
      writeFileSync(batchFile, Array.from({ length: pairs }, (_, i) => lines(i)).join(''));
      const t = performance.now();
      await ip('-n', ns, '-batch', batchFile);
      return performance.now() - t;
    };
    const q = ONE_QUEUE.join(' ');
    const floorSetUp = async (): Promise<number> =>
      (await batch(hn, (i) => `link add bv${i} ${q} type veth peer name bc${i} ${q} netns ${cn}\nlink set bv${i} up\n`)) +
      (await batch(cn, (i) => `addr add ${address(i)} dev bc${i}\nlink set bc${i} up\n`));
    const floorMs = await floorSetUp();
    const floorDeleteMs = await batch(hn, (i) => `link del bv${i}\n`);
    const floorBatchSetUpMs = await floorSetUp();
    const floorBatchDeleteMs = await batch(hn, (i) => `link set bv${i} group ${GROUP}\n${i === pairs - 1 ? `link del group ${GROUP}\n` : ''}`);
    rmSync(batchFile);
    const ceiling = (anchorMs: number, floor: number, ops: number): string =>
      `kernel floor (same work via ip -batch, one process, no exec per step): ${(ops / (floor / 1000)).toFixed(0)} ops/s, i.e. at most ${(anchorMs / floor).toFixed(1)}x over exec of ip`;

    // Deletion as tsnet does it (drivers/shared/reaper.ts): each link into a link group (left up:
    // setting a link down waits for a grace period of its own), then one RTM_DELLINK for the group,
    // so the kernel's grace periods are paid once per batch. The anchor does the same with ip:
    // `ip link set … group G` per link, one `ip link del group G`.
    const t3 = performance.now();
    const [h2, c2] = await setUpOurs(host, cont, pairs);
    for (let i = 0; i < pairs; i++) await h2.linkSet({ name: `bv${i}` }, { group: GROUP });
    await h2.linkDelGroup(GROUP);
    const oursBatchMs = performance.now() - t3;
    await h2.close();
    await c2.close();
    const t4 = performance.now();
    await setUpIp(hn, cn, pairs);
    for (let i = 0; i < pairs; i++) await ip('-n', hn, 'link', 'set', `bv${i}`, 'group', String(GROUP));
    await ip('-n', hn, 'link', 'del', 'group', String(GROUP));
    const anchorBatchMs = performance.now() - t4;

    // Delete dominates both sides (RCU grace periods in the kernel), so set-up alone is reported
    // too: it is what an attach costs.
    return [
      {
        name: `netlink: veth create+addr+up x${pairs}, set-up only (ops/s)`,
        ours: (pairs * 4) / (oursSetupMs / 1000),
        anchor: (pairs * 4) / (anchorSetupMs / 1000),
        higherIsBetter: true,
        target: 20,
        anchorCommand: 'in namespaces H and C with net.ipv6.conf.{all,default}.disable_ipv6=1 (both sides): ip -n H link add bvN numtxqueues 1 numrxqueues 1 type veth peer name bcN numtxqueues 1 numrxqueues 1 netns C; ip -n C addr add 10.x.y.z/32 dev bcN; ip -n C link set bcN up; ip -n H link set bvN up',
        note: ceiling(anchorSetupMs, floorMs, pairs * 4),
      },
      {
        name: `netlink: veth create+addr+up+delete x${pairs} (ops/s)`,
        ours: (pairs * 5) / (oursMs / 1000),
        anchor: (pairs * 5) / (anchorMs / 1000),
        higherIsBetter: true,
        // Deleting one link per request waits for the kernel's RCU grace periods (~3-7 ms) whoever
        // asks: no client gets near 20x here (the floor note says how near ip -batch gets). tsnet
        // deletes in groups (drivers/shared/reaper.ts); the next row is that, and carries the target.
        target: null,
        anchorCommand: 'the four commands above, then ip -n H link del bvN (one link per request; reported, not a target: see the floor)',
        note: ceiling(anchorMs, floorMs + floorDeleteMs, pairs * 5),
      },
      {
        name: `netlink: veth create+addr+up, then batched delete x${pairs} (ops/s)`,
        ours: (pairs * 5 + 1) / (oursBatchMs / 1000),
        anchor: (pairs * 5 + 1) / (anchorBatchMs / 1000),
        higherIsBetter: true,
        target: 20,
        anchorCommand: `the four commands above, then ip -n H link set bvN group ${GROUP} for each, and one ip -n H link del group ${GROUP} (tsnet deletes the same way: a link group, one RTM_DELLINK)`,
        note: ceiling(anchorBatchMs, floorBatchSetUpMs + floorBatchDeleteMs, pairs * 5 + 1),
      },
    ];
  } finally {
    await deleteNetns(host);
    await deleteNetns(cont);
  }
}
