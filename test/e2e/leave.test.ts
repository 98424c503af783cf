// Leave through the Docker protocol, driven as dockerd drives it: the container end of a veth
// that was moved into the sandbox is taken down and renamed aside there, so that dockerd finds
// nothing to move back (a namespace move costs the kernel an rcu_barrier). Only our own veth is
// touched, a vanished sandbox is no error, and delete still removes both ends.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterLab, pluginCall, type LabHost } from '../../bench/cluster-lab.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import { createNetns, deleteNetns, netnsByName } from '../../kernel/netns.js';
import type { NetnsRef } from '../../kernel/types.js';
import { createCnmNetwork, hex } from '../helpers/cnm-network.js';
import { ipJson, isRoot, linkNames, ok } from '../helpers/sys.js';

const P = 'tsnt';
const canRun = isRoot && ok('which', ['etcd']);
const nsName = (ns: NetnsRef): string => ns.path.split('/').pop()!;

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

describe.skipIf(!canRun)('leave: the container end is taken out of service in its sandbox', () => {
  const lab = new ClusterLab({ prefix: P, net: 217, etcdPort: 23760 });
  let h: LabHost;
  let hostNl: NetlinkHandle;
  let networkId = '';
  let poolId = '';
  const sandboxes: NetnsRef[] = [];

  beforeAll(async () => {
    await lab.up(1);
    h = lab.host(1);
    hostNl = await NetlinkHandle.open(netnsByName(h.ns));
    ({ networkId, poolId } = await createCnmNetwork(lab, h, '10.97.0.0/24'));
  }, 120_000);

  afterAll(async () => {
    await hostNl?.close();
    lab.down();
    await Promise.all(sandboxes.map((ns) => deleteNetns(ns).catch(() => undefined)));
  }, 180_000);

  /** Endpoint and join; with `move`, the container end goes into the sandbox as eth0, as dockerd does it. */
  async function attach(move: boolean): Promise<{ endpointId: string; address: string; sandbox: NetnsRef; srcName: string }> {
    const sandbox = await createNetns(`${P}lv${hex(6)}`);
    sandboxes.push(sandbox);
    const a = await pluginCall(lab.sock(h, 'tsipam'), '/IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} });
    const endpointId = hex(64);
    const net = lab.sock(h, 'tsbridge');
    await pluginCall(net, '/NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
    const j = await pluginCall(net, '/NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: sandbox.path, Options: {} });
    if (move) await hostNl.linkSet({ name: j.InterfaceName.SrcName }, { netns: sandbox, name: 'eth0' });
    return { endpointId, address: a.Address, sandbox, srcName: j.InterfaceName.SrcName };
  }

  async function detach(endpointId: string, address: string): Promise<void> {
    const net = lab.sock(h, 'tsbridge');
    await pluginCall(net, '/NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId });
    await pluginCall(lab.sock(h, 'tsipam'), '/IpamDriver.ReleaseAddress', { PoolID: poolId, Address: address });
  }

  const leave = (endpointId: string) => pluginCall(lab.sock(h, 'tsbridge'), '/NetworkDriver.Leave', { NetworkID: networkId, EndpointID: endpointId });

  it('takes the moved end down and renames it in the sandbox; delete removes both ends', async () => {
    const { endpointId, address, sandbox, srcName } = await attach(true);
    const hostEnd = `tsv${endpointId.slice(0, 12)}`;
    const aside = `tsx${endpointId.slice(0, 12)}`;
    const hostIndex = ipJson<any[]>(h.ns, 'link', 'show', 'dev', hostEnd)[0].ifindex;
    expect(linkNames(nsName(sandbox))).toContain('eth0');

    expect(await leave(endpointId)).toEqual({});
    const names = linkNames(nsName(sandbox));
    expect(names).not.toContain('eth0'); // nothing left under the name dockerd would move back
    expect(names).toContain(aside);
    const end = ipJson<any[]>(nsName(sandbox), '-d', 'link', 'show', 'dev', aside)[0];
    expect(end.flags).not.toContain('UP');
    expect(end.link_index).toBe(hostIndex); // still the peer of our host end
    expect(linkNames(h.ns)).not.toContain(srcName); // and nothing came back to the host

    await detach(endpointId, address);
    expect(await until(() => !linkNames(nsName(sandbox)).includes(aside) && !linkNames(h.ns).includes(hostEnd))).toBe(true);
  });

  it('leaves a sandbox alone when the end was never moved there, and when the sandbox is gone', async () => {
    // Not moved: the sandbox holds only what it had; the end stays in the host under its own name.
    const a = await attach(false);
    const before = ipJson<any[]>(nsName(a.sandbox), 'link', 'show');
    expect(await leave(a.endpointId)).toEqual({});
    expect(ipJson<any[]>(nsName(a.sandbox), 'link', 'show')).toEqual(before);
    expect(linkNames(h.ns)).toContain(a.srcName);
    await detach(a.endpointId, a.address);
    expect(await until(() => !linkNames(h.ns).includes(a.srcName))).toBe(true);

    // Moved, and then the sandbox vanished (the container died first): Leave still answers.
    const b = await attach(true);
    await deleteNetns(b.sandbox);
    expect(await leave(b.endpointId)).toEqual({});
    await detach(b.endpointId, b.address);
    expect(await until(() => !linkNames(h.ns).includes(`tsv${b.endpointId.slice(0, 12)}`))).toBe(true);
  });

  it('tsmacvlan: the moved interface is deleted in its sandbox, so nothing comes back; one never moved stays for delete', async () => {
    // A parent uplink on the lab host (a veth: this kernel has no dummy links).
    const parent = `${P}mp${hex(4)}`;
    await hostNl.linkAdd({ kind: 'veth', name: parent, up: true, peer: { name: `${P}mq${hex(4)}` } });
    const ipam = lab.sock(h, 'tsipam');
    const mv = lab.sock(h, 'tsmacvlan');
    const mvNetwork = hex(64);
    const p = await pluginCall(ipam, '/IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.97.8.0/24', Options: {}, V6: false });
    await pluginCall(mv, '/NetworkDriver.CreateNetwork', {
      NetworkID: mvNetwork, Options: { 'com.docker.network.generic': { parent } },
      IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: p.Pool, Gateway: '10.97.8.1/24', AuxAddresses: {} }], IPv6Data: [],
    });
    const attachMv = async (move: boolean): Promise<{ endpointId: string; sandbox: NetnsRef; mac: string; srcName: string }> => {
      const sandbox = await createNetns(`${P}lm${hex(6)}`);
      sandboxes.push(sandbox);
      const a = await pluginCall(ipam, '/IpamDriver.RequestAddress', { PoolID: p.PoolID, Address: '', Options: {} });
      const endpointId = hex(64);
      const made = await pluginCall(mv, '/NetworkDriver.CreateEndpoint', { NetworkID: mvNetwork, EndpointID: endpointId, Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
      const j = await pluginCall(mv, '/NetworkDriver.Join', { NetworkID: mvNetwork, EndpointID: endpointId, SandboxKey: sandbox.path, Options: {} });
      if (move) await hostNl.linkSet({ name: j.InterfaceName.SrcName }, { netns: sandbox, name: 'eth0' });
      return { endpointId, sandbox, mac: made.Interface.MacAddress, srcName: j.InterfaceName.SrcName };
    };
    const leaveMv = (endpointId: string) => pluginCall(mv, '/NetworkDriver.Leave', { NetworkID: mvNetwork, EndpointID: endpointId });
    const deleteMv = (endpointId: string) => pluginCall(mv, '/NetworkDriver.DeleteEndpoint', { NetworkID: mvNetwork, EndpointID: endpointId });
    try {
      const a = await attachMv(true);
      // The MAC Docker is told is the link's own: the one Leave looks for under dockerd's name.
      expect(ipJson<any[]>(nsName(a.sandbox), 'link', 'show', 'dev', 'eth0')[0].address).toBe(a.mac);
      // A macvlan of someone else's in the same sandbox, on the same parent, stays.
      const other = `${P}mo${hex(4)}`;
      await hostNl.linkAdd({ kind: 'macvlan', name: other, parent: { name: parent }, mode: 'bridge', netns: a.sandbox });
      expect(await leaveMv(a.endpointId)).toEqual({});
      expect(linkNames(nsName(a.sandbox))).toEqual(expect.arrayContaining([other]));
      expect(linkNames(nsName(a.sandbox))).not.toContain('eth0'); // nothing for dockerd to move back
      expect(linkNames(h.ns)).not.toContain(a.srcName);
      expect(await deleteMv(a.endpointId)).toEqual({});

      // Never moved (dockerd failed before the move): Leave leaves it, delete removes it.
      const b = await attachMv(false);
      expect(await leaveMv(b.endpointId)).toEqual({});
      expect(linkNames(h.ns)).toContain(b.srcName);
      expect(await deleteMv(b.endpointId)).toEqual({});
      expect(linkNames(h.ns)).not.toContain(b.srcName);
    } finally {
      await pluginCall(mv, '/NetworkDriver.DeleteNetwork', { NetworkID: mvNetwork }).catch(() => undefined);
      await hostNl.linkDelIfExists({ name: parent });
    }
  });
});
