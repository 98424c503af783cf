// Every NetlinkHandle operation against the real kernel, inside namespaces made for the test, each
// result checked independently with `ip -j`.

import { readdirSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError, KernelError } from '../../kernel/errors.js';
import type { NativeNetlinkLane } from '../../kernel/native.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import { NetlinkEvents, type NetlinkEvent } from '../../kernel/netlink-events.js';
import { createNetns, deleteNetns, netnsExists } from '../../kernel/netns.js';
import { sysctlGet, sysctlSet } from '../../kernel/sysctl.js';
import { cleanNamespacesAfterEach, makeNs, type TestNs } from '../helpers/netns.js';
import { ipJson, isRoot, kernelHas, linkNames, ping, run, uniqueName } from '../helpers/sys.js';

describe.skipIf(!isRoot)('netlink handle (root, throwaway namespaces)', () => {
  cleanNamespacesAfterEach();
  let host: TestNs;
  let nl: NetlinkHandle;

  beforeEach(async () => {
    host = makeNs('h');
    nl = await NetlinkHandle.open({ path: host.path });
  });
  afterEach(async () => {
    await nl.close();
  });

  const link = (name: string, ns = host.name): any => ipJson(ns, 'link', 'show', 'dev', name)[0];

  it('creates a veth pair with the peer directly in another namespace, and pings across it', async () => {
    const cont = makeNs('c');
    const made = await nl.linkAdd({ kind: 'veth', name: 'v-host', mtu: 1400, peer: { name: 'eth0', netns: { path: cont.path } } });
    // The kernel's echo names the new link and its peer's index in the other namespace.
    expect(made).toMatchObject({ name: 'v-host', kind: 'veth', mtu: 1400 });
    expect(made!.parentIndex).toBe(ipJson(cont.name, 'link', 'show', 'dev', 'eth0')[0].ifindex);
    expect(made!.parentElsewhere).toBe(true); // the index is the other namespace's
    await nl.addrAdd({ name: 'v-host' }, '10.77.0.1/24');
    await nl.linkSetUp({ name: 'v-host' });
    await using c = await NetlinkHandle.open({ path: cont.path });
    await c.addrAdd({ name: 'eth0' }, '10.77.0.2/24');
    await c.linkSetUp({ name: 'eth0' });

    // One queue each way from creation: the kernel then never cuts the queues back (an expedited
    // RCU grace period per end).
    expect(link('v-host')).toMatchObject({ mtu: 1400, linkinfo: { info_kind: 'veth' }, num_tx_queues: 1, num_rx_queues: 1 });
    expect(link('eth0', cont.name)).toMatchObject({ mtu: 1400, linkinfo: { info_kind: 'veth' }, num_tx_queues: 1, num_rx_queues: 1 });
    expect(linkNames(host.name)).not.toContain('eth0');
    expect(ping(cont.name, '10.77.0.1')).toBe(true);
    expect(ping(host.name, '10.77.0.2')).toBe(true);
    // Counters moved with the traffic.
    const st = (await nl.linkGet({ name: 'v-host' })).stats!;
    expect(st.rxPackets).toBeGreaterThan(0n);
    expect(st.txBytes).toBeGreaterThan(0n);
  });

  it('a veth made as a bridge port and up in its create request; port flags and alias in one set', async () => {
    await nl.linkAdd({ kind: 'bridge', name: 'br-c' });
    const br = await nl.linkGet({ name: 'br-c' });
    const made = await nl.linkAdd({ kind: 'veth', name: 'q0', master: { index: br.index }, up: true, peer: { name: 'q1' } });
    expect(link('q0').master).toBe('br-c');
    expect(link('q0').flags).toContain('UP');
    expect(link('q1').flags).not.toContain('UP');
    await nl.linkSet({ index: made!.index }, { alias: 'tsnet:test', bridgePort: { hairpin: true, learning: false } });
    expect(link('q0').linkinfo.info_slave_data).toMatchObject({ hairpin: true, learning: false });
    expect(link('q0').ifalias).toBe('tsnet:test');
    // Port flags on a link that is no bridge port: the kernel refuses, nothing half-done.
    await expect(nl.linkSet({ name: 'q1' }, { alias: 'x', bridgePort: { hairpin: true } })).rejects.toMatchObject({ code: 'ENOTSUP' }); // EOPNOTSUPP, the same number
    expect(link('q1').ifalias).toBeUndefined();
    await nl.linkDel({ name: 'q0' });
    await nl.linkDel({ name: 'br-c' });
  });

  it('bridge: create, enslave, release, port flags, up/down, MTU, MAC, rename, delete', async () => {
    await nl.linkAdd({ kind: 'bridge', name: 'br-t' });
    const pair = await nl.linkAdd({ kind: 'veth', name: 'p0', peer: { name: 'p1' } });
    expect(pair!.parentIndex).toBe(link('p1').ifindex);
    expect(pair!.parentElsewhere).toBeUndefined(); // both ends in this namespace
    await nl.linkSet({ name: 'p0' }, { master: { name: 'br-t' }, up: true });
    await nl.linkSet({ name: 'br-t' }, { up: true, mtu: 1450, mac: '02:11:22:33:44:55' });
    expect(link('p0').master).toBe('br-t');
    expect(link('br-t')).toMatchObject({ mtu: 1450, address: '02:11:22:33:44:55' });
    expect(link('br-t').flags).toContain('UP');

    await nl.bridgePortSet({ name: 'p0' }, { hairpin: true, isolated: true, learning: false });
    const slave = link('p0').linkinfo.info_slave_data;
    expect(slave).toMatchObject({ hairpin: true, isolated: true, learning: false });
    const parsed = await nl.linkGet({ name: 'p0' });
    expect(parsed.bridgePort).toEqual({ hairpin: true, isolated: true, learning: false, unicastFlood: true });
    expect(parsed.master).toBe((await nl.linkGet({ name: 'br-t' })).index);

    await nl.linkSet({ name: 'p0' }, { master: null, up: false });
    expect(link('p0').master).toBeUndefined();
    expect(link('p0').flags).not.toContain('UP');

    await nl.linkSet({ name: 'p1' }, { name: 'p1-renamed' });
    expect(linkNames(host.name)).toContain('p1-renamed');

    await nl.linkDel({ name: 'br-t' });
    await nl.linkDel({ name: 'p0' });
    expect(linkNames(host.name)).not.toContain('br-t');
    expect(linkNames(host.name)).not.toContain('p1-renamed'); // a veth dies with its peer
  });

  it('moves a link into another namespace', async () => {
    const other = makeNs('o');
    await nl.linkAdd({ kind: 'veth', name: 'mv0', peer: { name: 'mv1' } });
    await nl.linkSet({ name: 'mv1' }, { netns: { path: other.path } });
    expect(linkNames(host.name)).not.toContain('mv1');
    expect(linkNames(other.name)).toContain('mv1');
  });

  it('vxlan with vni, local address, port and learning off', async () => {
    await nl.linkAdd({ kind: 'veth', name: 'under0', peer: { name: 'under1' } });
    await nl.addrAdd({ name: 'under0' }, '192.0.2.10/24');
    await nl.linkAdd({ kind: 'vxlan', name: 'vx-t', vni: 4242, local: '192.0.2.10', port: 4790, dev: { name: 'under0' }, mtu: 1450 });
    const d = link('vx-t').linkinfo.info_data;
    expect(d).toMatchObject({ id: 4242, local: '192.0.2.10', port: 4790, learning: false });
    expect(link('vx-t').mtu).toBe(1450);
    const parsed = await nl.linkGet({ name: 'vx-t' });
    expect(parsed.vxlan).toMatchObject({ vni: 4242, local: '192.0.2.10', port: 4790, learning: false });
  });

  it('macvlan on a parent, in each mode', async () => {
    await nl.linkAdd({ kind: 'veth', name: 'par0', peer: { name: 'par1' } });
    for (const mode of ['bridge', 'private', 'vepa'] as const) {
      await nl.linkAdd({ kind: 'macvlan', name: `mv-${mode}`, parent: { name: 'par0' }, mode });
      expect(link(`mv-${mode}`).linkinfo.info_data.mode).toBe(mode);
      expect((await nl.linkGet({ name: `mv-${mode}` })).macvlan?.mode).toBe(mode);
    }
    await nl.linkAdd({ kind: 'veth', name: 'par2', peer: { name: 'par3' } });
    await nl.linkAdd({ kind: 'macvlan', name: 'mv-pass', parent: { name: 'par2' }, mode: 'passthru' });
    expect(link('mv-pass').linkinfo.info_data.mode).toBe('passthru');
  });

  it.skipIf(!kernelHas('dummy'))('dummy links', async () => {
    await nl.linkAdd({ kind: 'dummy', name: 'dm0' });
    expect(link('dm0').linkinfo.info_kind).toBe('dummy');
  });

  it.skipIf(!kernelHas('dummy') || !kernelHas('vlan'))('802.1Q sub-interfaces', async () => {
    await nl.linkAdd({ kind: 'dummy', name: 'dm1' });
    await nl.linkAdd({ kind: 'vlan', name: 'dm1.5', parent: { name: 'dm1' }, vlanId: 5 });
    expect(link('dm1.5').linkinfo.info_data.id).toBe(5);
  });

  it('link groups: set, read back, and one request deletes the whole group (peers included)', async () => {
    const cont = makeNs('c');
    for (const i of [0, 1, 2]) await nl.linkAdd({ kind: 'veth', name: `g${i}`, peer: { name: `gp${i}`, netns: { path: cont.path } } });
    await nl.linkAdd({ kind: 'veth', name: 'keep', peer: { name: 'keep-p' } });
    for (const i of [0, 1, 2]) await nl.linkSet({ name: `g${i}` }, { group: 4242, up: false });
    expect(link('g1').group).toBe('4242');
    expect((await nl.linkGet({ name: 'g2' })).group).toBe(4242);
    expect((await nl.linkGet({ name: 'keep' })).group).toBeUndefined();
    expect(await nl.linkDelGroup(4242)).toBe(true);
    expect(linkNames(host.name).filter((n) => n.startsWith('g'))).toEqual([]);
    expect(linkNames(cont.name).filter((n) => n.startsWith('gp'))).toEqual([]);
    expect(linkNames(host.name)).toContain('keep');
    // An empty group is not an error; group 0 (every default link) is refused before the kernel.
    expect(await nl.linkDelGroup(4242)).toBe(false);
    await expect(nl.linkDelGroup(0)).rejects.toThrow(RangeError);
  });

  it('link and address events: created, enslaved, released, deleted, address removed; a burst without overrun', async () => {
    const seen: NetlinkEvent[] = [];
    const events = NetlinkEvents.open({ path: host.path }, (e) => seen.push(e));
    try {
      await nl.linkAdd({ kind: 'bridge', name: 'ev-br' });
      await nl.linkAdd({ kind: 'veth', name: 'ev-a', peer: { name: 'ev-b' } });
      await nl.linkSet({ name: 'ev-a' }, { master: { name: 'ev-br' }, up: true });
      await nl.addrAdd({ name: 'ev-br' }, '10.78.0.1/24');
      await nl.addrDel({ name: 'ev-br' }, '10.78.0.1/24');
      await nl.linkSet({ name: 'ev-a' }, { master: null });
      await nl.linkDel({ name: 'ev-br' });
      for (let i = 0; i < 300; i++) await nl.linkAdd({ kind: 'veth', name: `evx${i}`, peer: { name: `evy${i}` } });
      await vi.waitFor(() => expect(seen.filter((e) => e.type === 'link-new' && e.link.name === 'evx299')).toHaveLength(1), { timeout: 3000 });
      const br = (await nl.linkList()).length; // the namespace still answers while watched
      expect(br).toBeGreaterThan(600);
      const links = seen.filter((e): e is Extract<NetlinkEvent, { link: unknown }> => 'link' in e && !e.bridgePort);
      expect(links.some((e) => e.type === 'link-new' && e.link.name === 'ev-a' && e.link.master !== undefined)).toBe(true);
      expect(links.some((e) => e.type === 'link-new' && e.link.name === 'ev-a' && e.link.master === undefined && e.link.up)).toBe(true);
      expect(links.some((e) => e.type === 'link-del' && e.link.name === 'ev-br')).toBe(true);
      expect(seen.some((e) => e.type === 'addr-del' && e.addr.cidr === '10.78.0.1/24')).toBe(true);
      expect(seen.some((e) => e.type === 'overrun')).toBe(false);
    } finally {
      events.close();
      events.close(); // idempotent
    }
    const after = seen.length;
    await nl.linkAdd({ kind: 'veth', name: 'ev-late', peer: { name: 'ev-late-p' } });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.length).toBe(after); // nothing after close
  });

  it('lists links, finds by index, and reports a missing link as ENODEV', async () => {
    await nl.linkAdd({ kind: 'bridge', name: 'br-l' });
    const all = await nl.linkList();
    const br = all.find((l) => l.name === 'br-l')!;
    expect(br.kind).toBe('bridge');
    expect((await nl.linkGet({ index: br.index })).name).toBe('br-l');
    await expect(nl.linkGet({ name: 'absent0' })).rejects.toMatchObject({ code: 'ENODEV' });
    await expect(nl.linkDel({ name: 'absent0' })).rejects.toBeInstanceOf(KernelError);
    expect(await nl.linkDelIfExists({ name: 'absent0' })).toBe(false);
    expect(await nl.linkFind({ name: 'absent0' })).toBeUndefined();
  });

  it('a duplicate name fails with EEXIST and leaves the first link intact', async () => {
    await nl.linkAdd({ kind: 'bridge', name: 'dup0', mtu: 1400 });
    const err = await nl.linkAdd({ kind: 'bridge', name: 'dup0' }).catch((e) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(err.code).toBe('EEXIST');
    expect(err.message).toContain('dup0');
    expect(link('dup0').mtu).toBe(1400);
  });

  it('an unknown link kind carries the kernel’s extended-ack text', async () => {
    // vlan on a bridge parent is refused by the kernel with an explanation when 8021q is absent;
    // an unsupported kind is the most portable way to get an extack.
    const err = await nl.linkAdd({ kind: 'vlan', name: 'vl0', parent: { name: 'lo' }, vlanId: 9 }).catch((e) => e);
    expect(err).toBeInstanceOf(KernelError);
    if (!kernelHas('vlan')) expect(err.extack).toMatch(/Unknown device type/);
  });

  it('rejects bad names and values before any syscall', async () => {
    // Every exchange of this handle goes through its lane's transact (native/src/netlink_lane.h).
    const spy = vi.spyOn((nl as unknown as { lane: NativeNetlinkLane }).lane, 'transact');
    try {
      for (const bad of ['', 'x'.repeat(16), 'a/b', 'a b', '$(id)']) {
        await expect(nl.linkAdd({ kind: 'bridge', name: bad })).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(nl.linkGet({ name: bad })).rejects.toBeInstanceOf(InvalidArgumentError);
      }
      await expect(nl.linkAdd({ kind: 'veth', name: 'ok0', peer: { name: 'bad peer' } })).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(nl.linkAdd({ kind: 'vxlan', name: 'vx9', vni: 1 << 24 })).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(nl.linkAdd({ kind: 'bridge', name: 'br9', mtu: 20 })).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(nl.addrAdd({ index: 1 }, '10.0.0.1/40')).rejects.toBeInstanceOf(InvalidArgumentError);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it('addresses: IPv4 with broadcast, IPv6 with nodad, list, replace and delete', async () => {
    await nl.linkAdd({ kind: 'bridge', name: 'br-a' });
    await nl.linkSetUp({ name: 'br-a' });
    await nl.addrAdd({ name: 'br-a' }, '10.88.0.1/16');
    await nl.addrAdd({ name: 'br-a' }, 'fd88::1/64', { nodad: true });
    const shown = ipJson(host.name, 'addr', 'show', 'dev', 'br-a')[0].addr_info;
    const v4 = shown.find((a: any) => a.family === 'inet');
    const v6 = shown.find((a: any) => a.family === 'inet6' && a.local === 'fd88::1');
    expect(v4).toMatchObject({ local: '10.88.0.1', prefixlen: 16, broadcast: '10.88.255.255' });
    expect(v6).toMatchObject({ prefixlen: 64, nodad: true });
    expect(v6.tentative).toBeUndefined();

    const listed = await nl.addrList({ link: { name: 'br-a' } });
    expect(listed.map((a) => a.cidr)).toEqual(expect.arrayContaining(['10.88.0.1/16', 'fd88::1/64']));
    await expect(nl.addrAdd({ name: 'br-a' }, '10.88.0.1/16')).rejects.toMatchObject({ code: 'EEXIST' });
    await nl.addrReplace({ name: 'br-a' }, '10.88.0.1/16');
    await nl.addrDel({ name: 'br-a' }, '10.88.0.1/16');
    await nl.addrDel({ name: 'br-a' }, 'fd88::1/64');
    const after = ipJson(host.name, 'addr', 'show', 'dev', 'br-a')[0].addr_info.map((a: any) => a.local);
    expect(after).not.toContain('10.88.0.1');
    expect(after).not.toContain('fd88::1');
  });

  it('routes: add, default, onlink, scope, replace, list, delete', async () => {
    await nl.linkAdd({ kind: 'veth', name: 'r0', peer: { name: 'r1' } });
    await nl.linkSetUp({ name: 'r0' });
    await nl.linkSetUp({ name: 'r1' });
    await nl.addrAdd({ name: 'r0' }, '10.66.0.1/24');
    await nl.routeAdd({ dst: '10.67.0.0/16', gateway: '10.66.0.254', dev: { name: 'r0' } });
    await nl.routeAdd({ dst: '10.68.0.0/16', dev: { name: 'r0' } }); // link scope
    await nl.routeAdd({ dst: 'default', gateway: '169.254.1.1', dev: { name: 'r0' }, onlink: true });
    await nl.routeAdd({ dst: 'fd67::/64', dev: { name: 'r0' }, metric: 50 });

    const routes = ipJson<any[]>(host.name, 'route', 'show');
    expect(routes).toEqual(expect.arrayContaining([
      expect.objectContaining({ dst: '10.67.0.0/16', gateway: '10.66.0.254', dev: 'r0' }),
      expect.objectContaining({ dst: '10.68.0.0/16', dev: 'r0', scope: 'link' }),
      expect.objectContaining({ dst: 'default', gateway: '169.254.1.1', flags: expect.arrayContaining(['onlink']) }),
    ]));
    expect(ipJson<any[]>(host.name, '-6', 'route', 'show')).toEqual(
      expect.arrayContaining([expect.objectContaining({ dst: 'fd67::/64', metric: 50 })]),
    );
    await expect(nl.routeAdd({ dst: '10.67.0.0/16', gateway: '10.66.0.254', dev: { name: 'r0' } })).rejects.toMatchObject({ code: 'EEXIST' });
    await nl.routeReplace({ dst: '10.67.0.0/16', gateway: '10.66.0.253', dev: { name: 'r0' } });
    const listed = await nl.routeList({ family: 4 });
    expect(listed.find((r) => r.dst === '10.67.0.0/16')?.gateway).toBe('10.66.0.253');
    expect(listed.find((r) => r.dst === 'default')).toMatchObject({ gateway: '169.254.1.1', onlink: true });

    await nl.routeDel({ dst: '10.67.0.0/16' });
    await nl.routeDel({ dst: 'default', family: 4 });
    await expect(nl.routeDel({ dst: '10.67.0.0/16' })).rejects.toMatchObject({ code: 'ESRCH' });
    const left = ipJson<any[]>(host.name, 'route', 'show').map((r) => r.dst);
    expect(left).not.toContain('10.67.0.0/16');
    expect(left).not.toContain('default');
  });

  it('neighbours and FDB: ARP entry, bridge FDB, VXLAN FDB with remote VTEP and the flood entry', async () => {
    await nl.linkAdd({ kind: 'veth', name: 'n0', peer: { name: 'n1' } });
    await nl.linkSetUp({ name: 'n0' });
    await nl.addrAdd({ name: 'n0' }, '10.55.0.1/24');
    await nl.neighAdd({ dev: { name: 'n0' }, family: 4, ip: '10.55.0.9', mac: '02:00:00:00:00:09' });
    await expect(nl.neighAdd({ dev: { name: 'n0' }, family: 4, ip: '10.55.0.9', mac: '02:00:00:00:00:0a' })).rejects.toMatchObject({ code: 'EEXIST' });
    await nl.neighSet({ dev: { name: 'n0' }, family: 4, ip: '10.55.0.9', mac: '02:00:00:00:00:0a' });
    const arp = ipJson<any[]>(host.name, 'neigh', 'show', 'dev', 'n0');
    expect(arp).toEqual([expect.objectContaining({ dst: '10.55.0.9', lladdr: '02:00:00:00:00:0a', state: ['PERMANENT'] })]);
    expect((await nl.neighList({ family: 4, link: { name: 'n0' } }))[0]).toMatchObject({ ip: '10.55.0.9', mac: '02:00:00:00:00:0a' });
    await nl.neighDel({ dev: { name: 'n0' }, family: 4, ip: '10.55.0.9', mac: '02:00:00:00:00:0a' });
    expect(ipJson<any[]>(host.name, 'neigh', 'show', 'dev', 'n0')).toEqual([]);

    await nl.addrAdd({ name: 'n0' }, '192.0.2.1/24');
    await nl.linkAdd({ kind: 'vxlan', name: 'vx-f', vni: 77, local: '192.0.2.1', dev: { name: 'n0' } });
    await nl.linkAdd({ kind: 'bridge', name: 'br-f' });
    await nl.linkSet({ name: 'vx-f' }, { master: { name: 'br-f' }, up: true });
    await nl.neighAppend({ dev: { name: 'vx-f' }, family: 'bridge', mac: '00:00:00:00:00:00', ip: '192.0.2.2' });
    await nl.neighAppend({ dev: { name: 'vx-f' }, family: 'bridge', mac: '00:00:00:00:00:00', ip: '192.0.2.3' });
    await nl.neighSet({ dev: { name: 'vx-f' }, family: 'bridge', mac: '02:aa:00:00:00:01', ip: '192.0.2.2' });
    await nl.neighSet({ dev: { name: 'vx-f' }, family: 'bridge', mac: '02:bb:00:00:00:01', fdbFlags: 'master' });
    const fdb = JSON.parse(run('bridge', ['-n', host.name, '-j', 'fdb', 'show', 'dev', 'vx-f']));
    const floods = fdb.filter((e: any) => e.mac === '00:00:00:00:00:00').map((e: any) => e.dst).sort();
    expect(floods).toEqual(['192.0.2.2', '192.0.2.3']);
    expect(fdb).toEqual(expect.arrayContaining([
      expect.objectContaining({ mac: '02:aa:00:00:00:01', dst: '192.0.2.2' }),
      expect.objectContaining({ mac: '02:bb:00:00:00:01', master: 'br-f' }),
    ]));
    const listed = await nl.neighList({ family: 'bridge', link: { name: 'vx-f' } });
    expect(listed.filter((n) => n.mac === '00:00:00:00:00:00').map((n) => n.ip).sort()).toEqual(['192.0.2.2', '192.0.2.3']);
    await nl.neighDel({ dev: { name: 'vx-f' }, family: 'bridge', mac: '00:00:00:00:00:00', ip: '192.0.2.3' });
    const remaining = (await nl.neighList({ family: 'bridge', link: { name: 'vx-f' } })).filter((n) => n.mac === '00:00:00:00:00:00');
    expect(remaining.map((n) => n.ip)).toEqual(['192.0.2.2']);
  });

  it('per-namespace sysctls', async () => {
    await nl.linkAdd({ kind: 'veth', name: 's0', peer: { name: 's1' } });
    const ns = { path: host.path };
    await sysctlSet(ns, ['net', 'ipv4', 'conf', 's0', 'route_localnet'], '1');
    await sysctlSet(ns, ['net', 'ipv6', 'conf', 's0', 'accept_dad'], '0');
    await sysctlSet(ns, 'net.ipv4.ip_forward', '1');
    expect(await sysctlGet(ns, ['net', 'ipv4', 'conf', 's0', 'route_localnet'])).toBe('1');
    // iproute2's view from inside the namespace agrees; the real host's value is not what we set.
    expect(run('ip', ['netns', 'exec', host.name, 'cat', '/proc/sys/net/ipv4/conf/s0/route_localnet']).trim()).toBe('1');
    expect(run('ip', ['netns', 'exec', host.name, 'cat', '/proc/sys/net/ipv6/conf/s0/accept_dad']).trim()).toBe('0');
    expect(run('cat', ['/proc/sys/net/ipv4/conf/all/route_localnet']).trim()).toBe('0');
  });

  it('a sysctl through the handle runs in its namespace, between the requests around it', async () => {
    // Nothing awaited in between: create, IPv6 off, up go to the lane together. The sysctl's file
    // exists only once the create has run, and only in this namespace: run early, or anywhere
    // else, it would fail with ENOENT.
    const cont = makeNs('c');
    const made = nl.linkAdd({ kind: 'veth', name: 'o0', peer: { name: 'o1', netns: { path: cont.path } } });
    const off = nl.sysctlSet(['net', 'ipv6', 'conf', 'o0', 'disable_ipv6'], '1');
    const up = nl.linkSetUp({ name: 'o0' });
    await Promise.all([made, off, up]);
    await using c = await NetlinkHandle.open({ path: cont.path });
    await c.linkSetUp({ name: 'o1' });
    expect(run('ip', ['netns', 'exec', host.name, 'cat', '/proc/sys/net/ipv6/conf/o0/disable_ipv6']).trim()).toBe('1');
    // The peer, in the other namespace, keeps IPv6 and gets its link-local address.
    expect(run('ip', ['netns', 'exec', cont.name, 'cat', '/proc/sys/net/ipv6/conf/o1/disable_ipv6']).trim()).toBe('0');
    await vi.waitFor(() => expect(ipJson(cont.name, '-6', 'addr', 'show', 'dev', 'o1')[0].addr_info.length).toBeGreaterThan(0));
    expect(link('o0').flags).toContain('UP');
    expect(ipJson(host.name, '-6', 'addr', 'show', 'dev', 'o0')).toEqual([]);
    expect(run('ip', ['-n', host.name, '-6', 'route', 'show', 'table', 'all', 'dev', 'o0']).trim()).toBe('');
    // A sysctl the namespace lacks is a KernelError naming it; the lane goes on.
    const err = await nl.sysctlSet(['net', 'ipv6', 'conf', 'nosuch0', 'disable_ipv6'], '1').catch((e) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(err.code).toBe('ENOENT');
    expect(err.message).toContain('/proc/sys/net/ipv6/conf/nosuch0/disable_ipv6');
    expect((await nl.linkGet({ name: 'o0' })).up).toBe(true);
  });

  it('a brief request runs on the calling thread while no lane is at work, and queues while one is', async () => {
    const lane = (nl as unknown as { lane: NativeNetlinkLane }).lane;
    const queued = vi.spyOn(lane, 'transact');
    await using other = await NetlinkHandle.open({ path: host.path });
    try {
      await nl.linkAdd({ kind: 'bridge', name: 'q0' });
      await nl.addrAdd({ name: 'q0' }, '10.9.0.1/24');
      await nl.linkSetUp({ name: 'q0' });
      expect(queued).not.toHaveBeenCalled();
      // A sysctl on the lane makes it busy: the request after it takes its turn there.
      await Promise.all([nl.sysctlSet(['net', 'ipv4', 'conf', 'q0', 'forwarding'], '1'), nl.linkSet({ name: 'q0' }, { mtu: 1400 })]);
      expect(queued).toHaveBeenCalledTimes(1);
      // So does any other lane at work: it may hold the RTNL lock for long.
      await Promise.all([other.sysctlSet(['net', 'ipv4', 'conf', 'q0', 'forwarding'], '0'), nl.linkSet({ name: 'q0' }, { mtu: 1450 })]);
      expect(queued).toHaveBeenCalledTimes(2);
      // Waiting for grace periods is never done on the calling thread: going down, deleting.
      await nl.linkSet({ name: 'q0' }, { up: false });
      await nl.linkDel({ name: 'q0' });
      expect(queued).toHaveBeenCalledTimes(4);
      // Errors from either path are the same KernelError.
      const err = await nl.linkGet({ name: 'q0' }).catch((e) => e);
      expect(err).toBeInstanceOf(KernelError);
      expect(err.code).toBe('ENODEV');
      expect(queued).toHaveBeenCalledTimes(4);
    } finally {
      queued.mockRestore();
    }
    expect(ipJson(host.name, 'link', 'show').map((l: { ifname: string }) => l.ifname)).not.toContain('q0');
  });

  it('requests issued together run in order; one that fails leaves the others to run', async () => {
    const names = Array.from({ length: 40 }, (_, i) => `p${i}`);
    const results = await Promise.allSettled(
      names.flatMap((n, i) => [
        nl.linkAdd({ kind: 'bridge', name: n }),
        // A duplicate in the middle of the queue: refused, and nothing after it is held up.
        ...(i === 20 ? [nl.linkAdd({ kind: 'bridge', name: 'p0' })] : []),
        nl.linkSet({ name: n }, { mtu: 1300 + i }),
      ]),
    );
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused).toHaveLength(1);
    expect(((refused[0] as PromiseRejectedResult).reason as KernelError).code).toBe('EEXIST');
    // Each set found its link already made: they ran in the order they were asked for.
    for (const [i, n] of names.entries()) expect(link(n).mtu).toBe(1300 + i);
  });
});

describe.skipIf(!isRoot)('namespaces through the binding', () => {
  it('creates and deletes a named namespace that iproute2 sees', async () => {
    const name = uniqueName('ns');
    const ref = await createNetns(name);
    try {
      expect(ipJson<any[]>(undefined, 'netns', 'list').map((n) => n.name)).toContain(name);
      await using h = await NetlinkHandle.open(ref);
      expect((await h.linkList()).map((l) => l.name)).toEqual(['lo']);
      await expect(createNetns(name)).rejects.toMatchObject({ code: 'EEXIST' });
    } finally {
      await deleteNetns(ref);
    }
    expect(await netnsExists(ref)).toBe(false);
    await deleteNetns(ref); // deleting twice is fine
  });

  it('a sysctl written in one namespace is not seen in another', async () => {
    const a = await createNetns(uniqueName('sa'));
    const b = await createNetns(uniqueName('sb'));
    try {
      await sysctlSet(a, 'net.ipv4.ip_forward', '1');
      await sysctlSet(b, 'net.ipv4.ip_forward', '0');
      expect(await sysctlGet(a, 'net.ipv4.ip_forward')).toBe('1');
      expect(await sysctlGet(b, 'net.ipv4.ip_forward')).toBe('0');
    } finally {
      await deleteNetns(a);
      await deleteNetns(b);
    }
  });

  it('opening a handle in a missing namespace is a KernelError naming the path', async () => {
    await expect(NetlinkHandle.open({ path: '/run/netns/tsnt-does-not-exist' })).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('pool threads are never left inside a namespace: fs works in parallel with handle churn', async () => {
    const ref = await createNetns(uniqueName('pt'));
    try {
      const before = readdirSync('/proc/self/task').length;
      await Promise.all(Array.from({ length: 50 }, async () => {
        const h = await NetlinkHandle.open(ref);
        await h.close();
        await sysctlGet(ref, 'net.ipv4.ip_forward');
      }));
      // Every pool thread still sees the host namespace: a netlink socket opened without a
      // namespace lists the host's links (which include the test namespace's absence of lo only).
      await using host = await NetlinkHandle.open();
      const hostLinks = (await host.linkList()).map((l) => l.name);
      expect(hostLinks).toContain('lo');
      expect(hostLinks.length).toBeGreaterThan(1);
      expect(readdirSync('/proc/self/task').length).toBeLessThanOrEqual(before + 4);
    } finally {
      await deleteNetns(ref);
    }
  });
});
