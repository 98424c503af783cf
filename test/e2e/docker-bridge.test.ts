// The first milestone with a real Docker Engine: tsbridge networks created, attached, isolated and
// torn down through `docker`, verified with packets and with kernel state.

import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, DockerScene, ensureDocker, IMAGE, makeOutsideHost, startTsnet, type TsnetDaemon } from '../helpers/docker.js';
import { eventually, ip, isRoot, linkNames, ok, run, uniqueName } from '../helpers/sys.js';

const execFileP = promisify(execFile);
const hasDocker = isRoot && ok('which', ['dockerd']);

describe.skipIf(!hasDocker)('docker + tsbridge (real dockerd)', () => {
  let daemon: TsnetDaemon;
  const scene = new DockerScene();
  const net = (args: string[]): string => scene.net(args);
  const ctr = (netName: string, ...extra: string[]): string => scene.ctr(netName, ...extra);
  const outside = uniqueName('out');
  let outsideHost: { remove(): void } | undefined;
  const canPing = (c: string, target: string): boolean => ok('docker', ['exec', c, 'ping', '-c', '1', '-W', '2', target]);
  /** Packet counts of the outside host's INPUT rules, by the source each rule names. */
  const inputHits = (): ((src: string) => number) => {
    const counters = run('ip', ['netns', 'exec', outside, 'iptables', '-L', 'INPUT', '-v', '-n', '-x']);
    return (src) => Number(counters.split('\n').find((l) => l.includes(src))!.trim().split(/\s+/)[0]);
  };
  /** Pings the outside host from container `c` (it must answer); then: how many pings came from `src`, per source asked for. */
  const pingOutsideFrom = (c: string, sources: string[]): ((src: string) => number) => {
    for (const src of sources) ip(outside, 'netns', 'exec', outside, 'iptables', '-I', 'INPUT', '-s', src, '-p', 'icmp', '-j', 'ACCEPT');
    ip(outside, 'netns', 'exec', outside, 'iptables', '-Z', 'INPUT');
    expect(canPing(c, '198.18.231.2')).toBe(true);
    return inputHits();
  };
  const allocations = (): number => {
    const db = new Database(join(daemon.stateDir, 'tsnet.db'), { readonly: true });
    try {
      return (db.prepare("select count(*) as n from kv where key like 'ipam/addr/%'").get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  /** Drift repairs of the firewall the daemon has logged so far. */
  const firewallRepairs = (): number =>
    readFileSync(join(daemon.stateDir, 'daemon.log'), 'utf8').split('\n').filter((l) => l.includes('"repair":"firewall re-rendered"')).length;

  beforeAll(async () => {
    await ensureDocker();
    daemon = await startTsnet();
    // An "outside" host: a namespace routed via the host over a veth pair.
    outsideHost = makeOutsideHost(outside, '198.18.231.1', '198.18.231.2', 30, { v6: { local: 'fd99:231::1', remote: 'fd99:231::2' }, defaultRoute: true });
  }, 180_000);

  afterAll(async () => {
    scene.cleanup();
    outsideHost?.remove();
    await daemon?.stop();
  }, 120_000);

  it('two containers reach each other by IP and by name; --ip is honoured; the default route is the gateway', () => {
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.10.0/24']);
    const a = ctr(n, '--ip', '10.231.10.50');
    const b = ctr(n);
    expect(docker('exec', a, 'ip', '-4', 'addr', 'show', 'eth0')).toContain('10.231.10.50/24');
    expect(docker('exec', b, 'ip', 'route')).toMatch(/default via 10\.231\.10\.1 dev eth0/);
    expect(canPing(b, '10.231.10.50')).toBe(true);
    expect(canPing(b, a)).toBe(true);
    expect(canPing(a, '10.231.10.1')).toBe(true);
  });

  it('containers reach a host outside through masquerade; another network cannot reach them', () => {
    const n1 = net(['--subnet', '10.231.20.0/24']); // Docker's default IPAM
    const n2 = net(['--ipam-driver', 'tsipam']); // a default pool chosen by tsipam
    const a = ctr(n1);
    const other = ctr(n2);
    expect(canPing(a, '198.18.231.2')).toBe(true);
    expect(canPing(other, '198.18.231.2')).toBe(true);
    const aIp = docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', a);
    expect(canPing(other, aIp)).toBe(false);
  });

  it('an --internal network cannot reach the outside host', () => {
    const n = net(['--internal', '--ipam-driver', 'tsipam', '--subnet', '10.231.30.0/24']);
    const c = ctr(n);
    const peer = ctr(n);
    expect(canPing(c, '198.18.231.2')).toBe(false);
    expect(canPing(c, peer)).toBe(true);
    // No gateway from Docker's side either: Join set DisableGatewayService, so no docker_gwbridge.
    expect(docker('exec', c, 'ip', 'route')).not.toContain('default');
    expect(docker('network', 'ls', '--format', '{{.Name}}')).not.toContain('docker_gwbridge');
  });

  it('bad input gives a clear error and leaves nothing behind', () => {
    const before = linkNames().filter((l) => l.startsWith('tsb'));
    const name = uniqueName('bad');
    const unknown = run('docker', ['network', 'create', '-d', 'tsbridge', '-o', 'no.such.option=1', name], { allowFail: true });
    expect(unknown).toBe('');
    expect(run('sh', ['-c', `docker network create -d tsbridge -o no.such.option=1 ${name} 2>&1 || true`])).toMatch(/does not know option "no.such.option"/);
    expect(run('sh', ['-c', `docker network create -d tsbridge -o com.docker.network.bridge.name=lo ${name} 2>&1 || true`])).toMatch(/lo already exists/);
    expect(run('sh', ['-c', `docker network create -d tsbridge --ipam-driver tsipam --subnet 10.231.40.7/24 ${name} 2>&1 || true`])).toMatch(/host bits/);
    expect(linkNames().filter((l) => l.startsWith('tsb'))).toEqual(before);
    expect(run('sh', ['-c', `curl -s -o /dev/null -w '%{http_code}' --unix-socket /run/docker/plugins/tsbridge.sock -X POST -d '{nope' http://x/NetworkDriver.CreateNetwork`])).toBe('400');
  });

  it('the outside host sees the host’s address (masquerade), not the container’s', () => {
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.60.0/24']);
    // Count ICMP requests from the host's address, seen inside the outside namespace's input chain.
    const hits = pingOutsideFrom(ctr(n), ['198.18.231.1', '10.231.60.0/24']);
    expect(hits('198.18.231.1')).toBeGreaterThan(0);
    expect(hits('10.231.60.0/24')).toBe(0);
  });

  it('com.docker.network.host_ipv4: traffic leaving the host has that source (SNAT), as with Docker’s bridge', () => {
    // A second address of the host, on the link to the outside host (whose default route is this host).
    run('ip', ['addr', 'add', '198.18.231.9/32', 'dev', `${outside}h`]);
    try {
      const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.61.0/24', '-o', 'com.docker.network.host_ipv4=198.18.231.9']);
      expect(run('iptables', ['-t', 'nat', '-S', 'TSNET-POSTROUTING'])).toMatch(/-s 10\.231\.61\.0\/24 ! -o \S+ -j SNAT --to-source 198\.18\.231\.9/);
      const hits = pingOutsideFrom(ctr(n), ['198.18.231.1', '198.18.231.9']);
      expect(hits('198.18.231.9')).toBeGreaterThan(0);
      expect(hits('198.18.231.1')).toBe(0);
      const bad = run('sh', ['-c', `docker network create -d tsbridge -o com.docker.network.host_ipv4=10.0.0.1/8 ${uniqueName('h4')} 2>&1 || true`]);
      expect(bad).toContain('must be an IPv4 address');
    } finally {
      run('ip', ['addr', 'del', '198.18.231.9/32', 'dev', `${outside}h`]);
    }
  });

  it('dual-stack: both families container to container and to the outside host', () => {
    const n = net(['--ipv6', '--ipam-driver', 'tsipam', '--subnet', '10.231.70.0/24', '--subnet', 'fd77:231::/64']);
    const a = ctr(n);
    const b = ctr(n);
    const a6 = docker('exec', a, 'ip', '-6', 'addr', 'show', 'eth0');
    const addr6 = /inet6 (fd77:231::[0-9a-f:]+)\/64/.exec(a6)?.[1];
    expect(addr6).toBeDefined();
    expect(docker('exec', b, 'ip', '-6', 'route')).toMatch(/default via fd77:231::1 dev eth0/);
    expect(ok('docker', ['exec', b, 'ping', '-6', '-c', '1', '-W', '2', addr6!])).toBe(true);
    expect(canPing(b, a)).toBe(true);
    expect(ok('docker', ['exec', b, 'ping', '-6', '-c', '1', '-W', '2', 'fd99:231::2'])).toBe(true);
    expect(canPing(b, '198.18.231.2')).toBe(true);
    expect(run('ip6tables', ['-S', 'TSNET-FORWARD'])).toContain('-i tsb-');
  });

  it('the gateway MAC stays put as containers come and go (an unassigned bridge MAC follows its ports)', () => {
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.85.0/24']);
    const first = ctr(n);
    const bridge = linkNames().find((l) => l.startsWith('tsb-') && run('ip', ['-br', 'addr', 'show', 'dev', l]).includes('10.231.85.1'))!;
    const mac = (): string => JSON.parse(run('ip', ['-j', 'link', 'show', 'dev', bridge]))[0].address;
    const before = mac();
    for (let i = 0; i < 3; i++) ctr(n);
    docker('rm', '-f', first);
    expect(mac()).toBe(before);
  });

  it('docker network connect / disconnect add and remove a second interface', () => {
    const n1 = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.80.0/24']);
    const n2 = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.81.0/24']);
    const c = ctr(n1);
    const peer = ctr(n2);
    expect(canPing(c, '10.231.81.2')).toBe(false);
    docker('network', 'connect', n2, c);
    expect(docker('exec', c, 'ip', '-4', 'addr', 'show', 'eth1')).toMatch(/10\.231\.81\.\d+\/24/);
    expect(canPing(c, peer)).toBe(true);
    docker('network', 'disconnect', n2, c);
    expect(ok('docker', ['exec', c, 'ip', 'link', 'show', 'eth1'])).toBe(false);
    expect(canPing(c, '10.231.80.1')).toBe(true);
  });

  it('bridge options act on the datapath: name, MTU, icc off, masquerade off, container interface prefix', () => {
    const bridge = uniqueName('br');
    const n = net([
      '--ipam-driver', 'tsipam', '--subnet', '10.231.110.0/24',
      '-o', `com.docker.network.bridge.name=${bridge}`,
      '-o', 'com.docker.network.driver.mtu=1400',
      '-o', 'com.docker.network.bridge.enable_icc=false',
      '-o', 'com.docker.network.bridge.enable_ip_masquerade=false',
      '-o', 'com.docker.network.container_iface_prefix=tsx',
    ]);
    const a = ctr(n);
    const b = ctr(n);
    expect(run('ip', ['-br', 'addr', 'show', 'dev', bridge])).toContain('10.231.110.1/24');
    // Docker numbers the interface after the prefix, as with its bridge driver.
    expect(docker('exec', a, 'cat', '/sys/class/net/tsx0/mtu')).toBe('1400');
    expect(docker('exec', a, 'ls', '/sys/class/net')).not.toMatch(/\beth0\b/);
    const badPrefix = run('sh', ['-c', `docker network create -d tsbridge -o com.docker.network.container_iface_prefix=bad/x ${uniqueName('bp')} 2>&1 || true`]);
    expect(badPrefix).toContain('cannot start an interface name');
    // icc off: the gateway answers, the neighbour on the same bridge does not.
    expect(canPing(a, '10.231.110.1')).toBe(true);
    expect(canPing(a, docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', b))).toBe(false);
    // Masquerade off: the outside host (whose default route is this host) sees the container's
    // own address, never the host's.
    const hits = pingOutsideFrom(a, ['198.18.231.1', '10.231.110.0/24']);
    expect(hits('10.231.110.0/24')).toBeGreaterThan(0);
    expect(hits('198.18.231.1')).toBe(0);
    expect(run('iptables', ['-t', 'nat', '-S'])).not.toContain('10.231.110.0/24');
  });

  it('a requested MAC address is the container interface’s (API 1.41 Config.MacAddress)', () => {
    // The CLI here (28.x) sends --mac-address with --network only to API >= 1.44; this dockerd
    // speaks 1.41, so the container is created through the API as a 1.41 client would.
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.112.0/24']);
    const name = scene.track(uniqueName('mac'));
    const body = JSON.stringify({ Image: IMAGE, Cmd: ['sleep', '600'], MacAddress: '02:42:0a:e7:70:aa', HostConfig: { NetworkMode: n } });
    run('curl', ['-sf', '--unix-socket', '/var/run/docker.sock', '-H', 'Content-Type: application/json', '-d', body, `http://x/v1.41/containers/create?name=${name}`]);
    docker('start', name);
    expect(docker('exec', name, 'cat', '/sys/class/net/eth0/address')).toBe('02:42:0a:e7:70:aa');
    expect(canPing(name, '10.231.112.1')).toBe(true);
  });

  it('address requests are honoured: --ip-range, --aux-address', () => {
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.111.0/24', '--ip-range', '10.231.111.64/28', '--aux-address', 'printer=10.231.111.65']);
    const addrs = [ctr(n), ctr(n), ctr(n)].map((x) => docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', x));
    for (const a of addrs) {
      const last = Number(a.split('.')[3]);
      expect(a.startsWith('10.231.111.')).toBe(true);
      expect(last >= 64 && last < 80).toBe(true);
      expect(a).not.toBe('10.231.111.65');
    }
    expect(new Set(addrs).size).toBe(3);

    // --ip of a running container, of the gateway or of an aux address is refused, as Docker's own
    // IPAM refuses it: two containers must never share an address.
    const pinned = ctr(n, '--ip', '10.231.111.20');
    const again = (ip: string): string => {
      const name = scene.track(uniqueName('dupip'));
      return run('sh', ['-c', `docker run -d --name ${name} --network ${n} --ip ${ip} ${IMAGE} sleep 60 2>&1 || true`]);
    };
    expect(again('10.231.111.20')).toContain('address 10.231.111.20 is already in use by a container or an --aux-address of the network');
    const gateway = /default via (\S+)/.exec(docker('exec', pinned, 'ip', '-4', 'route'))![1]!;
    expect(again(gateway)).toContain(`address ${gateway} is already in use by the network's gateway`);
    expect(again('10.231.111.65')).toContain('address 10.231.111.65 is already in use');
    expect(docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', pinned)).toBe('10.231.111.20');
  });

  it('an overlapping subnet is refused clearly and leaves nothing', () => {
    net(['--ipam-driver', 'tsipam', '--subnet', '10.231.90.0/24']);
    const before = linkNames().filter((l) => l.startsWith('tsb'));
    const name = uniqueName('ovl');
    const out = run('sh', ['-c', `docker network create -d tsbridge --ipam-driver tsipam --subnet 10.231.90.128/25 ${name} 2>&1 || true`]);
    expect(out).toMatch(/overlaps 10\.231\.90\.0\/24/);
    expect(linkNames().filter((l) => l.startsWith('tsb'))).toEqual(before);

    // Pools from two IPAMs (Docker's own, then tsipam) cannot see each other; the driver does, as
    // Docker's bridge driver does ("networks have overlapping IPv4"). Either order is refused.
    const pools = (): string[] => {
      const db = new Database(join(daemon.stateDir, 'tsnet.db'), { readonly: true });
      try {
        return (db.prepare("select value from kv where key like 'ipam/pool/%'").all() as Array<{ value: string }>).map((r) => (JSON.parse(r.value) as { subnet: string }).subnet);
      } finally {
        db.close();
      }
    };
    net(['--subnet', '10.231.91.0/24']);
    net(['--ipam-driver', 'tsipam', '--subnet', '10.231.92.0/24']);
    const bridges = linkNames().filter((l) => l.startsWith('tsb'));
    for (const [ipam, subnet, theirs] of [['tsipam', '10.231.91.128/25', '10.231.91.0/24'], ['default', '10.231.92.0/23', '10.231.92.0/24']] as const) {
      const refused = run('sh', ['-c', `docker network create -d tsbridge --ipam-driver ${ipam} --subnet ${subnet} ${uniqueName('ovl')} 2>&1 || true`]);
      expect(refused).toContain(`subnet ${subnet} overlaps ${theirs} of tsnet network`);
      expect(linkNames().filter((l) => l.startsWith('tsb'))).toEqual(bridges);
    }
    expect(pools()).not.toContain('10.231.91.128/25'); // dockerd gave the refused network's pool back

    // Docker's default IPAM refuses docker0's subnet itself; through tsipam the driver does, as it
    // does any subnet the host reaches directly through an interface not tsnet's.
    const docker0 = docker('network', 'inspect', 'bridge', '-f', '{{(index .IPAM.Config 0).Subnet}}').trim();
    const inside = docker0.replace(/\/\d+$/, '/24');
    const taken = run('sh', ['-c', `docker network create -d tsbridge --ipam-driver tsipam --subnet ${inside} ${uniqueName('ovl')} 2>&1 || true`]);
    expect(taken).toContain(`subnet ${inside} overlaps ${docker0}, which this host reaches directly through docker0`);
    expect(linkNames().filter((l) => l.startsWith('tsb'))).toEqual(bridges);
    expect(pools()).not.toContain(inside);
  });

  it('of two overlapping networks asked for at once, exactly one is made', async () => {
    // The overlap check reads committed networks: side by side, both once passed it (4 runs in 5).
    for (const third of [93, 94, 95]) {
      const pair = [
        { name: uniqueName('ovl'), args: ['--subnet', `10.231.${third}.0/24`] },
        { name: uniqueName('ovl'), args: ['--ipam-driver', 'tsipam', '--subnet', `10.231.${third}.0/25`] },
      ];
      const outcomes = await Promise.allSettled(pair.map((p) => execFileP('docker', ['network', 'create', '-d', 'tsbridge', ...p.args, p.name])));
      pair.forEach((p, i) => outcomes[i]!.status === 'fulfilled' && scene.nets.push(p.name));
      expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
      const refused = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')!;
      expect(String((refused.reason as { stderr?: string }).stderr)).toMatch(new RegExp(`subnet 10\\.231\\.${third}\\.0/2[45] (overlaps|is already used by)`));
    }
  });

  it('networks created concurrently all have their rules the moment docker network create returns', async () => {
    // Each render reads the store when it starts; two side by side once landed in either order,
    // and 5 of 8 networks made together came back with no NAT or forwarding rules until the next
    // drift pass re-rendered them.
    const repairsBefore = firewallRepairs();
    const made = Array.from({ length: 8 }, (_, i) => ({ name: uniqueName('cc'), subnet: `10.231.${120 + i}.0/24`, bridge: `tsbcc${i}` }));
    await Promise.all(made.map((m) => execFileP('docker', ['network', 'create', '-d', 'tsbridge', '--subnet', m.subnet, '-o', `com.docker.network.bridge.name=${m.bridge}`, m.name])));
    for (const m of made) scene.nets.push(m.name);
    const nat = run('iptables', ['-t', 'nat', '-S', 'TSNET-POSTROUTING']);
    const forward = run('iptables', ['-S', 'TSNET-FORWARD']);
    for (const m of made) {
      expect(nat).toContain(`-A TSNET-POSTROUTING -s ${m.subnet} ! -o ${m.bridge} -j MASQUERADE`);
      expect(forward).toContain(`-o ${m.bridge} `);
    }
    // Nor did a drift pass find anything to put back meanwhile.
    expect(firewallRepairs()).toBe(repairsBefore);
  });

  it('SIGKILL of the daemon: containers keep talking; after a restart new containers attach with fresh addresses', async () => {
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.100.0/24']);
    const a = ctr(n);
    const b = ctr(n);
    await daemon.stop('SIGKILL');
    expect(canPing(a, b)).toBe(true);
    expect(canPing(a, '198.18.231.2')).toBe(true);
    daemon = await startTsnet(daemon.stateDir);
    const c = ctr(n);
    const addrs = [a, b, c].map((x) => docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', x));
    expect(new Set(addrs).size).toBe(3);
    expect(canPing(c, a)).toBe(true);
  });

  it('a container and network removed while the daemon is down are cleaned up once it is back, and the subnet can be had again', async () => {
    // Docker only logs a plugin's failed DeleteEndpoint/DeleteNetwork (after 15 s of retries
    // each) and forgets them, so the bridge, veths, rules, host port and subnet stayed ours for
    // good: the same `docker network create` was then refused as overlapping.
    const restart = async (args: string[]): Promise<void> => {
      await daemon.stop();
      daemon = await startTsnet(daemon.stateDir, args);
    };
    try {
      // No sweep during the test's first part: only Docker's event can mark the network as Docker's.
      await restart(['--docker-sync-interval', '3600']);
      const name = uniqueName('gone');
      docker('network', 'create', '-d', 'tsbridge', '--subnet', '10.231.140.0/24', name);
      scene.nets.push(name);
      const id = docker('network', 'inspect', '-f', '{{.Id}}', name);
      const bridge = `tsb-${id.slice(0, 11)}`;
      const c = scene.track(docker('run', '-d', '--network', name, '-p', '18861:80', IMAGE, 'sleep', '600'));
      const hostEnd = run('ip', ['-o', 'link', 'show', 'master', bridge]).split(': ')[1]!.split('@')[0]!;
      // Only networks known to be Docker's are Docker's to forget. Docker's network create event
      // says so at once, long before the first sweep (30 s here) would have seen it: a network
      // removed while the daemon was down within its first 30 s used to stay for good.
      const seen = (): boolean => {
        const db = new Database(join(daemon.stateDir, 'tsnet.db'), { readonly: true });
        try {
          const row = db.prepare('select value from kv where key = ?').get(`net/${id}`) as { value: string } | undefined;
          return !!row && (JSON.parse(row.value) as { seenByDocker?: boolean }).seenByDocker === true;
        } finally {
          db.close();
        }
      };
      expect(await eventually(seen, 5000)).toBe(true);

      await daemon.stop('SIGKILL');
      docker('rm', '-f', c); // each plugin call is retried for 15 s, then only logged
      docker('network', 'rm', name);
      scene.forgetNet(name);
      expect(linkNames()).toContain(bridge);
      expect(linkNames()).toContain(hostEnd);

      daemon = await startTsnet(daemon.stateDir, ['--docker-sync-interval', '1']);
      // The bridge goes before the rules are rendered without it: wait for the last of it.
      const natRules = (): string => run('iptables', ['-t', 'nat', '-S']);
      expect(await eventually(() => !linkNames().includes(bridge) && !natRules().includes('10.231.140.0/24'))).toBe(true);
      expect(linkNames()).not.toContain(hostEnd);
      expect(linkNames()).not.toContain(hostEnd.replace(/^tsv/, 'tsc'));
      // The host port as the DNAT rule spells it: a bare '18861' also matched another network's
      // bridge name (tsb-27ba9d18861 in one CI run), whose id had those digits by chance.
      expect(natRules()).not.toMatch(/--dport 18861\b/);
      // The host port is free again: a listener can take it.
      const free = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(false));
        s.listen(18861, '0.0.0.0', () => s.close(() => resolve(true)));
      });
      expect(free).toBe(true);
      expect(scene.net(['--subnet', '10.231.140.0/24'])).toBeTruthy();
    } finally {
      // The rest of the file runs against a daemon as it was started in beforeAll.
      if (daemon.proc.exitCode !== null || daemon.proc.signalCode !== null) daemon = await startTsnet(daemon.stateDir);
      else if (daemon.extraArgs.length) await restart([]);
    }
  }, 300_000);

  it('after docker rm and docker network rm, no link, rule or allocation of the network remains', () => {
    const baseAlloc = allocations();
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.231.50.0/24']);
    const c = ctr(n);
    const bridge = linkNames().find((l) => l.startsWith('tsb-') && run('ip', ['-br', 'addr', 'show', 'dev', l]).includes('10.231.50.1'));
    expect(bridge).toBeDefined();
    expect(run('iptables', ['-S', 'TSNET-FORWARD'])).toContain(bridge!);
    expect(allocations()).toBeGreaterThan(baseAlloc);
    const ports = run('ip', ['-o', 'link', 'show', 'master', bridge!]).split('\n').filter(Boolean).map((l) => l.split(': ')[1]!.split('@')[0]!);
    expect(ports).toHaveLength(1);
    docker('rm', '-f', c);
    docker('network', 'rm', n);
    scene.forgetNet(n);
    expect(linkNames()).not.toContain(bridge);
    for (const p of ports) {
      expect(linkNames()).not.toContain(p);
      expect(linkNames()).not.toContain(p.replace(/^tsv/, 'tsc'));
    }
    expect(run('iptables', ['-S'])).not.toContain(bridge!);
    expect(run('iptables', ['-t', 'nat', '-S'])).not.toContain('10.231.50.0/24');
    expect(allocations()).toBe(baseAlloc);
  });
});
