// tsoverlay across three namespace hosts with etcd: packets, DNS, isolation, egress, published
// ports, bytes on the underlay, host death, etcd outage, races for addresses and VNIs, and one
// end on the real dockerd.

import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterLab, pluginCall, type LabHost } from '../../bench/cluster-lab.js';
import { IMAGE, ensureDocker, startTsnet, type TsnetDaemon } from '../../bench/lab.js';
import { EtcdCluster } from '../../store/etcd-cluster.js';
import { overlayNetnsName } from '../../drivers/overlay/netns.js';
import { docker, dockerFail } from '../helpers/docker.js';
import { isRoot, ok, run } from '../helpers/sys.js';
import { silentLog } from '../helpers/fakes.js';

const P = 'tsnt';
const canRun = isRoot && ok('which', ['etcd']) && ok('which', ['tcpdump']);

type Net = { networkId: string; poolId: string };
type Ctr = { endpointId: string; address: string; ns: string };

const ipOf = (c: { address: string }): string => c.address.split('/')[0]!;
const pingOk = (ns: string, ip: string, count = 1): boolean => ok('ip', ['netns', 'exec', ns, 'ping', '-c', String(count), '-W', '1', ip]);
/** The overlay namespace of network VNI on a host (bridge br0, VXLAN vxlan0). */
const ovlNs = (h: LabHost, vni = 4096): string => overlayNetnsName(h.ip, vni);
const fdb = (h: LabHost, vni = 4096): string => run('bridge', ['-n', ovlNs(h, vni), 'fdb', 'show', 'dev', 'vxlan0'], { allowFail: true });

/** A one-shot TCP server in a namespace that answers with the peer address it saw. */
function tcpEcho(ns: string, port: number): ChildProcess {
  const script = `require('net').createServer((s)=>{s.end(s.remoteAddress.replace('::ffff:',''))}).listen(${port},()=>console.log('up'))`;
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return p;
}
async function started(p: ChildProcess): Promise<void> {
  await new Promise<void>((resolve) => p.stdout!.once('data', () => resolve()));
}
function tcpAsk(ns: string, ip: string, port: number): string {
  const script = `const s=require('net').connect(${port},'${ip}');let d='';s.on('data',(x)=>d+=x);s.on('end',()=>{console.log(d);process.exit(0)});s.on('error',(e)=>{console.log('ERR '+e.code);process.exit(1)});setTimeout(()=>{console.log('TIMEOUT');process.exit(1)},3000)`;
  return run('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { allowFail: true }).trim();
}
async function eventually(check: () => boolean | Promise<boolean>, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - t0;
}
function quietNs(ns: string): void {
  // No IPv6 chatter (router solicitations, DAD): the underlay captures count only what we send.
  run('ip', ['netns', 'add', ns], { allowFail: true });
  run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

describe.skipIf(!canRun)('tsoverlay on three hosts', () => {
  const lab = new ClusterLab({ prefix: P, net: 213, etcdPort: 23790, leaseTtl: 2, graceSeconds: 4 });
  let h1: LabHost, h2: LabHost, h3: LabHost;
  const blue: Net[] = [];
  let c1: Ctr, c2: Ctr, c3: { ns: string; ip: string; mac: string };
  const cniConf = { cniVersion: '1.1.0', name: 'blue', type: 'tsoverlay', ipam: { type: 'tsipam', subnet: '10.77.0.0/24', gateway: '10.77.0.1' } };

  beforeAll(async () => {
    run('sh', ['-c', 'cd /work/main 2>/dev/null; true']);
    await lab.up(3);
    [h1, h2, h3] = [lab.host(1), lab.host(2), lab.host(3)];
  }, 120_000);
  afterAll(() => {
    if (!process.env.TSNET_KEEP_LAB) lab.down();
  });

  it('containers on three hosts get cluster-unique addresses and talk across hosts (Docker protocol and CNI)', async () => {
    for (const h of [h1, h2]) blue.push(await lab.createNetworkCnm(h, 'blue', '10.77.0.0/24'));
    for (const n of [`${P}c1`, `${P}c2`, `${P}c3`]) quietNs(n);
    c1 = await lab.attachCnm(h1, blue[0]!, `${P}c1`);
    c2 = await lab.attachCnm(h2, blue[1]!, `${P}c2`);
    const r = lab.cni(h3, 'ADD', cniConf, `${P}c3`, 'IgnoreUnknown=1;K8S_POD_NAME=web-3');
    expect(r.code, JSON.stringify(r.out)).toBe(0);
    c3 = { ns: `${P}c3`, ip: r.out.ips[0].address.split('/')[0], mac: r.out.interfaces[1].mac };
    expect(r.out.ips[0].gateway).toBe('10.77.0.1');
    expect(r.out.dns.nameservers).toEqual(['10.77.0.1']);
    const addrs = [ipOf(c1), ipOf(c2), c3.ip];
    expect(new Set(addrs).size).toBe(3);
    // Same VNI, same gateway address and MAC on every host.
    const bridges = [h1, h2, h3].map((h) => JSON.parse(run('ip', ['-j', '-n', h.ns, 'addr', 'show', 'dev', 'tso-4096'])) as Array<{ address: string; addr_info: Array<{ local: string }> }>);
    // Bridge and VXLAN live in the network's own namespace, away from the host's netfilter.
    expect(run('ip', ['-n', ovlNs(h1), '-o', 'link', 'show', 'master', 'br0'])).toMatch(/vxlan0[\s\S]*gw0|gw0[\s\S]*vxlan0/);
    // The bridge's veth ports (the gateway's and each container's) carry frames with IPv6 off on
    // themselves, as tsbridge's do.
    const ports = (JSON.parse(run('ip', ['-j', '-n', ovlNs(h1), 'link', 'show', 'master', 'br0'])) as Array<{ ifname: string }>)
      .map((l) => l.ifname).filter((n) => n === 'gw0' || n.startsWith('tsv'));
    expect(ports.length).toBeGreaterThanOrEqual(2);
    for (const port of ports) {
      expect(run('ip', ['netns', 'exec', ovlNs(h1), 'cat', `/proc/sys/net/ipv6/conf/${port}/disable_ipv6`]).trim()).toBe('1');
    }
    expect(new Set(bridges.map((b) => b[0]!.address)).size).toBe(1);
    for (const b of bridges) expect(b[0]!.addr_info.map((a) => a.local)).toContain('10.77.0.1');
    const vx = JSON.parse(run('ip', ['-j', '-d', '-n', ovlNs(h1), 'link', 'show', 'vxlan0']))[0];
    expect(vx.linkinfo.info_data).toMatchObject({ id: 4096, learning: false, proxy: true, port: 4789, local: h1.ip });
    expect(vx.mtu).toBe(1450); // underlay 1500 minus the VXLAN overhead
    await eventually(() => pingOk(c1.ns, c3.ip) && pingOk(c1.ns, ipOf(c2)) && pingOk(c3.ns, ipOf(c2)), 5000);
    // TCP across hosts, and the peer keeps its own address (no NAT inside the overlay).
    const srv = tcpEcho(c2.ns, 7000);
    await started(srv);
    expect(tcpAsk(c3.ns, ipOf(c2), 7000)).toBe(c3.ip);
    srv.kill();
    // Learning is off: the entries come from the store (one per remote endpoint, one flood entry per remote host).
    expect(fdb(h1)).toMatch(new RegExp(`${c3.mac} dst ${h3.ip} (link-netnsid \\d+ )?self permanent`));
    expect(fdb(h1)).toMatch(new RegExp(`00:00:00:00:00:00 dst ${h3.ip} (link-netnsid \\d+ )?self permanent`));
  });

  it('no ARP and no unknown unicast crosses the underlay; pings do', async () => {
    run('ip', ['-n', c1.ns, 'neigh', 'flush', 'all']);
    run('ip', ['-n', c2.ns, 'neigh', 'flush', 'all']);
    const cap = spawn('tcpdump', ['-i', lab.underlay, '-nn', '-e', '-l', 'udp', 'port', '4789'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    cap.stdout!.on('data', (d) => (text += d));
    await new Promise((r) => setTimeout(r, 700));
    expect(pingOk(c1.ns, ipOf(c2), 3)).toBe(true);
    // An address nobody has: ARP for it must be answered (or not) locally, never flooded.
    expect(pingOk(c1.ns, '10.77.0.200')).toBe(false);
    await new Promise((r) => setTimeout(r, 500));
    cap.kill('SIGINT');
    await new Promise((r) => cap.once('exit', r));
    const lines = text.split('\n').filter(Boolean);
    expect(lines.filter((l) => /ICMP echo request/.test(l)).length).toBe(3);
    expect(lines.filter((l) => /ARP/.test(l))).toEqual([]);
    expect(lines.filter((l) => /10\.77\.0\.200/.test(l))).toEqual([]);
    // The endpoint's counters come from its bridge end in the overlay namespace: the pings count.
    const metrics = run('curl', ['-sf', '--unix-socket', h1.apiSocket, 'http://x/metrics']);
    const labels = `endpoint="${c1.endpointId.slice(0, 12)}",network="${blue[0]!.networkId.slice(0, 12)}"`;
    const sent = Number(new RegExp(`^tsnet_endpoint_transmit_bytes_total\\{${labels}\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
    expect(sent).toBeGreaterThan(3 * 84);
  });

  it('names of containers on the same overlay resolve on every host', async () => {
    // c3 came through CNI with K8S_POD_NAME=web-3 on host 3; ask host 1's resolver.
    await eventually(() => /Address: 10\.77\.0\.\d+/.test(run('ip', ['netns', 'exec', c1.ns, 'busybox', 'nslookup', 'web-3', '10.77.0.1'], { allowFail: true })), 5000);
    const out = run('ip', ['netns', 'exec', c1.ns, 'busybox', 'nslookup', 'web-3.tsnet.internal', '10.77.0.1'], { allowFail: true });
    expect(out).toContain(`Address: ${c3.ip}`);
  });

  it('two overlay networks are isolated from each other', async () => {
    const red = await lab.createNetworkCnm(h2, 'red', '10.78.0.0/24');
    quietNs(`${P}c4`);
    const c4 = await lab.attachCnm(h2, red, `${P}c4`);
    const red1 = await lab.createNetworkCnm(h1, 'red', '10.78.0.0/24');
    quietNs(`${P}c5`);
    const c5 = await lab.attachCnm(h1, red1, `${P}c5`);
    await eventually(() => pingOk(c5.ns, ipOf(c4)), 5000); // red works across hosts
    expect(pingOk(c1.ns, ipOf(c4))).toBe(false); // blue (host 1) to red (host 2)
    expect(pingOk(c1.ns, ipOf(c5))).toBe(false); // blue to red on the same host
    expect(pingOk(c4.ns, ipOf(c2))).toBe(false); // red to blue on the same host
    expect(run('ip', ['-n', ovlNs(h1, 4097), '-d', 'link', 'show', 'vxlan0'])).toMatch(/vxlan id 4097/);
    await lab.detachCnm(h1, red1, c5);
    await lab.detachCnm(h2, red, c4);
    await lab.deleteNetworkCnm(h1, red1);
    await lab.deleteNetworkCnm(h2, red);
    expect(run('ip', ['netns', 'list'])).not.toContain(ovlNs(h1, 4097)); // the network's namespace is gone
    expect(run('ip', ['-n', h1.ns, '-o', 'link', 'show'])).not.toMatch(/tso-4097/);
  });

  it('containers reach the outside through their own host (masquerade) and a published port works there', async () => {
    const out = lab.outside();
    const srv = tcpEcho(out.ns, 7001);
    await started(srv);
    expect(tcpAsk(c2.ns, out.ip, 7001)).toBe(h2.ip);
    expect(tcpAsk(c1.ns, out.ip, 7001)).toBe(h1.ip);
    srv.kill();
    // -p 8080:7002 for c2, as dockerd sends it.
    await pluginCall(lab.sock(h2), '/NetworkDriver.ProgramExternalConnectivity', {
      NetworkID: blue[1]!.networkId, EndpointID: c2.endpointId,
      Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 7002, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }] },
    });
    const inner = tcpEcho(c2.ns, 7002);
    await started(inner);
    expect(tcpAsk(out.ns, h2.ip, 8080)).toBe(out.ip); // the container sees the real client
    inner.kill();
    await pluginCall(lab.sock(h2), '/NetworkDriver.RevokeExternalConnectivity', { NetworkID: blue[1]!.networkId, EndpointID: c2.endpointId });
  });

  it('a mismatched subnet for an existing cluster network is a clear error and leaves nothing', async () => {
    const green = await lab.createNetworkCnm(h1, 'green', '10.79.0.0/24');
    const before = run('ip', ['-n', h2.ns, '-o', 'link', 'show']);
    await expect(lab.createNetworkCnm(h2, 'green', '10.99.0.0/24')).rejects.toThrow(/cluster network green exists with other settings: asked for subnet 10\.99\.0\.0\/24 \(it has 10\.79\.0\.0\/24\)/);
    await expect(lab.createNetworkCnm(h2, 'green', '10.79.0.0/24', { vni: '77' })).rejects.toThrow(/asked for VNI 77 \(it has 4097\)/);
    expect(run('ip', ['-n', h2.ns, '-o', 'link', 'show']).split('\n').length).toBe(before.split('\n').length);
    expect(run('ip', ['-n', h2.ns, '-o', 'link', 'show'])).not.toMatch(/tso-4097/);
    expect(run('ip', ['netns', 'list'])).not.toContain(ovlNs(h2, 4097));
    await lab.deleteNetworkCnm(h1, green);
  });

  it('two hosts attaching at the same instant never get the same address or VNI', async () => {
    const a = new EtcdCluster({ endpoints: [`${lab.gatewayIp}:23790`], hostId: 'race-a', vtep: '10.213.0.201', log: silentLog, prefix: '/race/' });
    const b = new EtcdCluster({ endpoints: [`${lab.gatewayIp}:23790`], hostId: 'race-b', vtep: '10.213.0.202', log: silentLog, prefix: '/race/' });
    try {
      await Promise.all([a.ensureNetwork({ name: 'n', subnet4: '10.90.0.0/24', gateway4: '10.90.0.1/24' }), b.ensureNetwork({ name: 'n', subnet4: '10.90.0.0/24', gateway4: '10.90.0.1/24' })]);
      const got = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).allocateAddress('n', '10.90.0.0/24', `ep${i}`)));
      expect(new Set(got).size).toBe(60);
      expect(got).not.toContain('10.90.0.1/24'); // the gateway is reserved
      const nets = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).ensureNetwork({ name: `v${i}`, subnet4: `10.91.${i}.0/24`, gateway4: `10.91.${i}.1/24` })));
      expect(new Set(nets.map((n) => n.vni)).size).toBe(10);
      // The same name from both at once: one network, one VNI.
      const [x, y] = await Promise.all([a.ensureNetwork({ name: 'same', subnet4: '10.92.0.0/24' }), b.ensureNetwork({ name: 'same', subnet4: '10.92.0.0/24' })]);
      expect(x.vni).toBe(y.vni);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('etcd going away stops nothing that runs; attachments fail clearly meanwhile and work again after', async () => {
    const pinger = spawn('ip', ['netns', 'exec', c1.ns, 'ping', '-i', '0.1', '-c', '60', '-W', '1', ipOf(c2)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let pingOut = '';
    pinger.stdout!.on('data', (d) => (pingOut += d));
    await new Promise((r) => setTimeout(r, 500));
    await lab.stopEtcd();
    quietNs(`${P}c6`);
    const during = lab.cni(h1, 'ADD', cniConf, `${P}c6`);
    expect(during.code).toBe(1);
    expect(during.out.code).toBe(11); // try again later
    expect(during.out.msg).toMatch(/cluster store .* unavailable/);
    expect(run('ip', ['-n', `${P}c6`, '-o', 'link', 'show'])).not.toMatch(/eth0/); // nothing half-made
    await new Promise((r) => setTimeout(r, 1500));
    await lab.startEtcd();
    const waited = await eventually(() => lab.cni(h1, 'ADD', cniConf, `${P}c6`).code === 0, 15_000);
    expect(waited).toBeLessThan(15_000);
    await new Promise((r) => pinger.once('exit', r));
    expect(pingOut).toMatch(/60 packets transmitted, 60 received, 0% packet loss/);
    await eventually(() => pingOk(`${P}c6`, ipOf(c2)), 5000);
    expect(lab.cni(h1, 'DEL', cniConf, `${P}c6`).code).toBe(0);
  });

  it('a daemon that comes back re-registers its endpoints: peers re-learn them without any container touched', async () => {
    await lab.stopDaemon(h2);
    // Its lease lapses: host 1 drops c2's entries, and traffic to c2 stops.
    await eventually(() => !fdb(h1).includes(h2.ip), 10_000);
    expect(pingOk(c1.ns, ipOf(c2))).toBe(false);
    const t0 = Date.now();
    await lab.startDaemon(h2);
    await eventually(() => pingOk(c1.ns, ipOf(c2)), 10_000);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // Same address as before: the store kept it for host 2 across the restart.
    expect(run('ip', ['-n', c2.ns, '-o', '-4', 'addr', 'show', 'eth0'])).toContain(c2.address);
  });

  it('a host that dies: its entries leave the peers within the lease TTL, its addresses after the grace period', async () => {
    expect(fdb(h1)).toContain(c3.mac);
    await lab.stopDaemon(h3);
    run('ip', ['netns', 'del', h3.ns]);
    const t0 = Date.now();
    await eventually(() => !fdb(h1).includes(c3.mac) && !fdb(h2).includes(h3.ip), 10_000);
    const gone = Date.now() - t0;
    expect(gone).toBeLessThan(2 * 2000 + 1500); // TTL 2 s (etcd may take up to about 2x to expire), plus the sync
    expect(pingOk(c1.ns, c3.ip)).toBe(false);
    // The address stays reserved through the 4 s grace period, then the sweep frees it.
    const probe = new EtcdCluster({ endpoints: [`${lab.gatewayIp}:23790`], hostId: 'probe', vtep: '10.213.0.203', log: silentLog });
    try {
      await expect(probe.claimAddress('blue', c3.ip, 'probe-ep')).rejects.toThrow(/in use by endpoint/);
      const freedAfter = await eventually(async () => probe.claimAddress('blue', c3.ip, 'probe-ep').then(() => true, () => false), 20_000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(4000);
      expect(freedAfter).toBeLessThan(20_000);
      await probe.releaseAddress('blue', c3.ip, 'probe-ep');
    } finally {
      await probe.close();
    }
  });

  it('one end on the real dockerd: docker network create -d tsoverlay, and its container talks to the namespace hosts', async () => {
    await ensureDocker();
    let daemon: TsnetDaemon | undefined;
    try {
      daemon = await startTsnet(undefined, ['--cluster-store', lab.etcdUrl, '--advertise-addr', lab.gatewayIp, '--lease-ttl', '2']);
      dockerFail('network', 'rm', `${P}-ovl`);
      docker('network', 'create', '-d', 'tsoverlay', '--ipam-driver', 'tsipam', '-o', 'tsnet.cluster_network=blue', '--subnet', '10.77.0.0/24', '--gateway', '10.77.0.1', `${P}-ovl`);
      const out = dockerFail('run', '--rm', '--network', `${P}-ovl`, IMAGE, 'sh', '-c', `ping -c 2 -W 2 ${ipOf(c2)} && ping -c 1 -W 2 ${ipOf(c1)} && ip -o -4 addr show eth0`);
      expect(out).toMatch(/2 packets transmitted, 2 packets received/);
      expect(out).toMatch(/1 packets transmitted, 1 packets received/);
      const mine = /inet (10\.77\.0\.\d+)\//.exec(out)?.[1];
      expect(mine && ![ipOf(c1), ipOf(c2)].includes(mine)).toBe(true);
      // --ip takes the address cluster-wide; the container's name is served on the other hosts.
      docker('run', '-d', '--name', `${P}-ovlweb`, '--network', `${P}-ovl`, '--ip', '10.77.0.50', IMAGE, 'sleep', '120');
      await eventually(() => run('ip', ['netns', 'exec', c1.ns, 'busybox', 'nslookup', `${P}-ovlweb`, '10.77.0.1'], { allowFail: true }).includes('Address: 10.77.0.50'), 10_000);
      expect(pingOk(c1.ns, '10.77.0.50')).toBe(true);
      await expect(lab.attachCnm(h1, blue[0]!, `${P}c7`, '10.77.0.50')).rejects.toThrow(/10\.77\.0\.50 .*in use by endpoint .* on host/);
      docker('rm', '-f', `${P}-ovlweb`);
      docker('network', 'rm', `${P}-ovl`);
      expect(run('ip', ['-o', 'link', 'show'])).not.toMatch(/tso-4096/);
      expect(run('ip', ['netns', 'list'])).not.toContain(overlayNetnsName(lab.gatewayIp, 4096));
    } finally {
      dockerFail('rm', '-f', `${P}-ovlweb`);
      dockerFail('network', 'rm', `${P}-ovl`);
      await daemon?.stop();
    }
  });
});

