// The multi-host lab: an underlay bridge in the root namespace, N "hosts" as network namespaces
// wired to it, one etcd, and a tsnet daemon per host (its own state dir, plugin dir and CNI
// socket, --cluster-store and --advertise-addr). Containers on a host are further namespaces,
// attached either as Docker drives a plugin (IPAM, CreateEndpoint, Join, then the interface moved
// in and configured the way dockerd does) or through the tsoverlay CNI plugin.
//
// Used by `npm run testbed`, the overlay tests and `npm run bench -- overlay`; everything it
// makes carries the prefix it is given, and down() removes every trace (also of an earlier run
// that died: the state file lists what to remove).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { ROOT, sh, succeeds, waitFor } from './lab.js';

export interface LabOptions {
  /** Name prefix of every namespace and link (tsnt for tests, tstb for the testbed, tsnb for benches). */
  prefix: string;
  /** Third octet base: the underlay is 10.<net>.0.0/24 (distinct per prefix, so labs can coexist). */
  net: number;
  etcdPort: number;
  leaseTtl?: number;
  graceSeconds?: number;
  /** More `tsnet serve` flags for every host's daemon. */
  daemonArgs?: string[];
}

export interface LabHost {
  index: number;
  ns: string;
  ip: string;
  dir: string;
  pluginDir: string;
  stateDir: string;
  cniSocket: string;
  apiSocket: string;
  pid?: number;
}

interface LabState {
  prefix: string;
  etcdPid?: number;
  etcdDir: string;
  hosts: LabHost[];
}

const stateFile = (prefix: string): string => `/run/tsnet-lab-${prefix}.json`;

export function pluginCall(sock: string, path: string, body: object = {}): Promise<any> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request({ socketPath: sock, path, method: 'POST', headers: { 'content-type': 'application/vnd.docker.plugins.v1.2+json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let json: any;
        try {
          json = JSON.parse(text);
        } catch {
          return reject(new Error(`${path}: not JSON: ${text.slice(0, 200)}`));
        }
        if (json?.Err) return reject(new Error(`${path}: ${json.Err}`));
        resolve(json);
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

export class ClusterLab {
  readonly underlay: string;
  readonly gatewayIp: string;
  readonly etcdUrl: string;
  hosts: LabHost[] = [];
  private etcdPid: number | undefined;
  private readonly etcdDir: string;

  constructor(readonly opts: LabOptions) {
    this.underlay = `${opts.prefix}ul0`;
    this.gatewayIp = `10.${opts.net}.0.1`;
    this.etcdUrl = `etcd://${this.gatewayIp}:${opts.etcdPort}`;
    this.etcdDir = `/tmp/${opts.prefix}-lab/etcd`;
  }

  hostIp(i: number): string {
    return `10.${this.opts.net}.0.${10 + i}`;
  }

  private save(): void {
    const st: LabState = { prefix: this.opts.prefix, etcdDir: this.etcdDir, hosts: this.hosts, ...(this.etcdPid ? { etcdPid: this.etcdPid } : {}) };
    writeFileSync(stateFile(this.opts.prefix), JSON.stringify(st, null, 2));
  }

  /** Builds the underlay, starts etcd and `n` hosts with their daemons. */
  async up(n: number): Promise<void> {
    ClusterLab.down(this.opts.prefix);
    mkdirSync(`/tmp/${this.opts.prefix}-lab`, { recursive: true });
    // A fixed MAC: a bridge without one takes its lowest port MAC, which changes as hosts join,
    // and hosts would keep sending to a stale ARP entry for the etcd address.
    sh('ip', ['link', 'add', this.underlay, 'address', `02:74:73:00:${this.opts.net.toString(16).padStart(2, '0')}:01`, 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${this.gatewayIp}/24`, 'dev', this.underlay]);
    sh('ip', ['link', 'set', this.underlay, 'up']);
    // The underlay is a plain switch, but with br_netfilter loaded (dockerd loads it) bridged
    // frames cross the root namespace's FORWARD chain, whose policy Docker may set to DROP.
    sh('iptables', ['-I', 'FORWARD', '-i', this.underlay, '-o', this.underlay, '-j', 'ACCEPT', '-m', 'comment', '--comment', `${this.opts.prefix} lab underlay`]);
    this.save();
    await this.startEtcd();
    for (let i = 1; i <= n; i++) await this.addHost(i);
  }

  async startEtcd(): Promise<void> {
    mkdirSync(this.etcdDir, { recursive: true });
    const log = openSync(join(this.etcdDir, '..', 'etcd.log'), 'a');
    const port = this.opts.etcdPort;
    const p = spawn('etcd', [
      '--name', `${this.opts.prefix}-etcd`, '--data-dir', this.etcdDir,
      '--listen-client-urls', `http://${this.gatewayIp}:${port},http://127.0.0.1:${port}`,
      '--advertise-client-urls', `http://${this.gatewayIp}:${port}`,
      '--listen-peer-urls', `http://127.0.0.1:${port + 1}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${port + 1}`,
      '--initial-cluster', `${this.opts.prefix}-etcd=http://127.0.0.1:${port + 1}`,
      '--heartbeat-interval', '100', '--election-timeout', '500',
    ], { detached: true, stdio: ['ignore', log, log] });
    p.unref();
    this.etcdPid = p.pid;
    this.save();
    await waitFor(() => succeeds('curl', ['-sf', `http://${this.gatewayIp}:${port}/health`]), 'etcd', 30_000);
  }

  /** Stops etcd (SIGTERM); its data stays for startEtcd() to resume. */
  async stopEtcd(): Promise<void> {
    if (!this.etcdPid) return;
    const pid = this.etcdPid;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    await waitFor(() => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z', 'etcd to stop', 15_000);
    this.etcdPid = undefined;
    this.save();
  }

  async addHost(i: number): Promise<LabHost> {
    const P = this.opts.prefix;
    const ns = `${P}h${i}`;
    const dir = `/tmp/${P}-lab/h${i}`;
    const h: LabHost = { index: i, ns, ip: this.hostIp(i), dir, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), cniSocket: join(dir, 'cni.sock'), apiSocket: join(dir, 'api.sock') };
    mkdirSync(h.pluginDir, { recursive: true });
    mkdirSync(h.stateDir, { recursive: true });
    if (!existsSync(`/run/netns/${ns}`)) {
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['link', 'add', `${P}u${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      sh('ip', ['link', 'set', `${P}u${i}`, 'master', this.underlay, 'up']);
      sh('ip', ['-n', ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', this.gatewayIp]);
    }
    this.hosts = [...this.hosts.filter((x) => x.index !== i), h].sort((a, b) => a.index - b.index);
    this.save();
    await this.startDaemon(h);
    return h;
  }

  /** An "outside" machine on the underlay (no route to any overlay subnet: replies need NAT). */
  outside(): { ns: string; ip: string } {
    const ns = `${this.opts.prefix}out`;
    const ip = `10.${this.opts.net}.0.250`;
    if (!existsSync(`/run/netns/${ns}`)) {
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['link', 'add', `${this.opts.prefix}uo`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      sh('ip', ['link', 'set', `${this.opts.prefix}uo`, 'master', this.underlay, 'up']);
      sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    return { ns, ip };
  }

  host(i: number): LabHost {
    const h = this.hosts.find((x) => x.index === i);
    if (!h) throw new Error(`no lab host ${i}`);
    return h;
  }

  async startDaemon(h: LabHost): Promise<void> {
    const log = openSync(join(h.dir, 'daemon.log'), 'a');
    // nsenter --net, not `ip netns exec`: the latter gives the daemon a mount namespace of its own,
    // and the /run/netns entries it makes for overlay networks would be invisible outside it.
    const p = spawn('nsenter', [
      `--net=/run/netns/${h.ns}`, process.execPath, join(ROOT, 'dist/bin/tsnet.js'), 'serve',
      '--state-dir', h.stateDir, '--api-socket', h.apiSocket, '--plugin-dir', h.pluginDir, '--cni-socket', h.cniSocket,
      '--cluster-store', this.etcdUrl, '--advertise-addr', h.ip,
      '--lease-ttl', String(this.opts.leaseTtl ?? 3), '--cluster-grace', String(this.opts.graceSeconds ?? 10),
      '--docker-socket', join(h.dir, 'no-docker.sock'), '--log-level', 'info', ...(this.opts.daemonArgs ?? []),
    ], { detached: true, stdio: ['ignore', log, log] });
    p.unref();
    h.pid = p.pid;
    this.save();
    // Sockets come up one after another: wait for the daemon's last (tsipam) and the CNI socket.
    const sock = join(h.pluginDir, 'tsipam.sock');
    await waitFor(() => existsSync(sock) && existsSync(h.cniSocket) && succeeds('curl', ['-s', '--unix-socket', sock, '-X', 'POST', 'http://x/Plugin.Activate']), `daemon of ${h.ns}`, 30_000);
  }

  /** SIGKILL (default) or SIGTERM the daemon of a host and wait for it to go. */
  async stopDaemon(h: LabHost, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!h.pid) return;
    const pid = h.pid;
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
    await waitFor(() => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z', `daemon of ${h.ns} to stop`, 15_000);
    h.pid = undefined;
    this.save();
  }

  sock(h: LabHost, driver = 'tsoverlay'): string {
    return join(h.pluginDir, `${driver}.sock`);
  }

  /**
   * Creates the network on a host the way dockerd does with `--ipam-driver tsipam`:
   * RequestPool, RequestAddress (gateway), CreateNetwork. Returns Docker-style ids.
   */
  async createNetworkCnm(h: LabHost, cluster: string, subnet: string, opts: Record<string, string> = {}): Promise<{ networkId: string; poolId: string }> {
    const ipam = this.sock(h, 'tsipam');
    const pool = await pluginCall(ipam, '/IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: subnet, Options: {}, V6: false });
    const gw = await pluginCall(ipam, '/IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    const networkId = randomHex(64);
    await pluginCall(this.sock(h), '/NetworkDriver.CreateNetwork', {
      NetworkID: networkId,
      Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'tsnet.cluster_network': cluster, ...opts } },
      IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: pool.Pool, Gateway: gw.Address, AuxAddresses: {} }],
      IPv6Data: [],
    });
    return { networkId, poolId: pool.PoolID };
  }

  async deleteNetworkCnm(h: LabHost, net: { networkId: string; poolId: string }): Promise<void> {
    await pluginCall(this.sock(h), '/NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
    await pluginCall(this.sock(h, 'tsipam'), '/IpamDriver.ReleasePool', { PoolID: net.poolId });
  }

  /**
   * A container (namespace `name`) attached as dockerd does: RequestAddress, CreateEndpoint, Join,
   * then the interface moved into the namespace, renamed eth0, addressed and routed.
   */
  async attachCnm(h: LabHost, net: { networkId: string; poolId: string }, name: string, ip?: string): Promise<{ endpointId: string; address: string; ns: string }> {
    const ns = name;
    if (!existsSync(`/run/netns/${ns}`)) {
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const addr = await pluginCall(this.sock(h, 'tsipam'), '/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: ip ?? '', Options: {} });
    const endpointId = randomHex(64);
    await pluginCall(this.sock(h), '/NetworkDriver.CreateEndpoint', { NetworkID: net.networkId, EndpointID: endpointId, Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
    const join = await pluginCall(this.sock(h), '/NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: endpointId, SandboxKey: `/run/netns/${ns}`, Options: {} });
    const src = join.InterfaceName.SrcName as string;
    sh('ip', ['-n', h.ns, 'link', 'set', src, 'netns', ns]);
    sh('ip', ['-n', ns, 'link', 'set', src, 'name', 'eth0']);
    sh('ip', ['-n', ns, 'addr', 'add', addr.Address, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    if (join.Gateway) sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', join.Gateway]);
    return { endpointId, address: addr.Address, ns };
  }

  async detachCnm(h: LabHost, net: { networkId: string; poolId: string }, c: { endpointId: string; address: string; ns: string }): Promise<void> {
    await pluginCall(this.sock(h), '/NetworkDriver.Leave', { NetworkID: net.networkId, EndpointID: c.endpointId });
    await pluginCall(this.sock(h), '/NetworkDriver.DeleteEndpoint', { NetworkID: net.networkId, EndpointID: c.endpointId });
    await pluginCall(this.sock(h, 'tsipam'), '/IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: c.address });
    sh('ip', ['netns', 'del', c.ns], { allowFail: true });
  }

  /** Runs the installed tsoverlay CNI plugin (the native shim) against a host's daemon. */
  cni(h: LabHost, command: 'ADD' | 'DEL' | 'CHECK', conf: object, containerNs: string, extraArgs = '', type = (conf as { type?: string }).type ?? 'tsoverlay'): { code: number; out: any } {
    if (command === 'ADD' && !existsSync(`/run/netns/${containerNs}`)) {
      sh('ip', ['netns', 'add', containerNs]);
      sh('ip', ['-n', containerNs, 'link', 'set', 'lo', 'up']);
    }
    const r = spawnSync(join(ROOT, 'build/Release/tsnet-cni-shim'), [], {
      input: JSON.stringify(conf), encoding: 'utf8', timeout: 60_000,
      argv0: type,
      env: {
        ...process.env, CNI_COMMAND: command, CNI_CONTAINERID: containerNs, CNI_NETNS: `/run/netns/${containerNs}`, CNI_IFNAME: 'eth0',
        CNI_PATH: '/usr/lib/cni', CNI_ARGS: extraArgs, TSNET_CNI_SOCKET: h.cniSocket, TSNET_STATE_DIR: h.stateDir,
      },
    });
    let out: any = undefined;
    try {
      out = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
    } catch {
      out = r.stdout;
    }
    return { code: r.status ?? -1, out };
  }

  /** Tears down the lab of this prefix, from its state file and by name (idempotent). */
  static down(prefix: string): void {
    let st: LabState | undefined;
    try {
      st = JSON.parse(readFileSync(stateFile(prefix), 'utf8')) as LabState;
    } catch {
      st = undefined;
    }
    for (const h of st?.hosts ?? []) if (h.pid) killTree(h.pid);
    if (st?.etcdPid) killTree(st.etcdPid);
    // Daemons started by an earlier lab whose state file is gone.
    spawnSync('pkill', ['-9', '-f', `/tmp/${prefix}-lab/`]);
    // Overlay namespaces the lab's daemons made are named after their VTEP (10.<net>.0.x).
    const net = st?.hosts[0]?.ip.split('.')[1];
    const ovl = net ? `tsovl-0a${Number(net).toString(16).padStart(2, '0')}00` : undefined;
    for (const ns of sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(prefix) || (ovl && n.startsWith(ovl)))) {
      sh('ip', ['netns', 'del', ns], { allowFail: true });
    }
    for (const l of JSON.parse(sh('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>) {
      if (l.ifname.startsWith(`${prefix}u`)) sh('ip', ['link', 'del', l.ifname], { allowFail: true });
    }
    const rule = ['FORWARD', '-i', `${prefix}ul0`, '-o', `${prefix}ul0`, '-j', 'ACCEPT', '-m', 'comment', '--comment', `${prefix} lab underlay`];
    while (succeeds('iptables', ['-D', ...rule]));
    rmSync(`/tmp/${prefix}-lab`, { recursive: true, force: true });
    rmSync(stateFile(prefix), { force: true });
  }

  down(): void {
    ClusterLab.down(this.opts.prefix);
  }
}

function killTree(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

function randomHex(n: number): string {
  let s = '';
  while (s.length < n) s += Math.random().toString(16).slice(2);
  return s.slice(0, n);
}
