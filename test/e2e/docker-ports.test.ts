// Port publishing (-p) on tsbridge with a real dockerd: every place a user expects to reach a
// published port from, TCP and UDP, the negative cases, and clean removal.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../bench/lab.js';
import { docker, DockerScene, ensureDocker, IMAGE, makeOutsideHost, startTsnet, type TsnetDaemon } from '../helpers/docker.js';
import { eventually, ip, isRoot, ok, run, uniqueName } from '../helpers/sys.js';

const hasDocker = isRoot && ok('which', ['dockerd']);
const HOST = '198.18.232.1'; // a host address, facing the outside test host
const HOST6 = 'fd99:232::1';

describe.skipIf(!hasDocker)('docker -p on tsbridge (real dockerd)', () => {
  let daemon: TsnetDaemon;
  const scene = new DockerScene();
  const net = (args: string[]): string => scene.net(args);
  const outside = uniqueName('out');
  let outsideHost: { remove(): void } | undefined;
  let net1: string;
  let net2: string;

  /** A container serving "hello <name>" over HTTP on `port` (busybox httpd, verbose log on stderr). */
  const web = (netName: string, port: number, ...publish: string[]): string => {
    const name = uniqueName('w');
    docker('run', '-d', '--name', name, '--network', netName, ...publish, IMAGE, 'sh', '-c',
      `mkdir -p /www && echo hello ${name} > /www/index.html && exec httpd -f -vv -p ${port} -h /www`);
    scene.track(name);
    return name;
  };
  const plain = (netName: string): string => scene.ctr(netName);
  const fromOutside = (url: string): string => run('ip', ['netns', 'exec', outside, 'curl', '-s', '-m', '3', url], { allowFail: true }).trim();
  const fromHost = (url: string): string => run('curl', ['-s', '-m', '3', url], { allowFail: true }).trim();
  /** HTTP GET from inside a container with busybox nc (busybox-static's wget crashes here). */
  const fromCtr = (c: string, url: string): string => {
    const m = /^http:\/\/([^/:]+):(\d+)\//.exec(url)!;
    const out = run('docker', ['exec', c, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${m[1]} ${m[2]}`], { allowFail: true });
    return out.trim().split('\n').at(-1)!.trim();
  };
  /** Sends one UDP datagram from the outside host, from a fixed source port when given. */
  const udpFromOutside = (port: number, msg: string, srcPort = 0): void => {
    run('ip', ['netns', 'exec', outside, 'python3', '-c',
      `import socket;s=socket.socket(2,2);s.bind(('',${srcPort}));s.sendto(b'${msg}',('${HOST}',${port}))`]);
  };
  const udpRecorder = (netName: string, publish: string): string => {
    const name = uniqueName('u');
    docker('run', '-d', '--name', name, '--network', netName, '-p', publish, IMAGE, 'udp-recorder', '7', '/tmp/got');
    scene.track(name);
    return name;
  };
  const received = (c: string): string => run('docker', ['exec', c, 'cat', '/tmp/got'], { allowFail: true });
  /** One datagram from the host (or the outside host) and the echo that comes back, '' if none in 1 s. */
  const udpAsk = (addr: string, port: number, msg: string, from?: string): string =>
    run(from ? 'ip' : 'python3', [...(from ? ['netns', 'exec', from, 'python3'] : []), '-c', `
import socket
s = socket.socket(socket.AF_INET6 if ':' in '${addr}' else socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(b'${msg}', ('${addr}', ${port}))
try: print(s.recv(2048).decode())
except OSError: print('')
`], { allowFail: true }).trim();
  const dnatRules = (): string[] => run('iptables', ['-t', 'nat', '-S', 'TSNET-DNAT']).split('\n').filter((l) => l.startsWith('-A'));

  beforeAll(async () => {
    await ensureDocker();
    daemon = await startTsnet();
    outsideHost = makeOutsideHost(outside, HOST, '198.18.232.2', 30, { v6: { local: HOST6, remote: 'fd99:232::2' } });
    net1 = net(['--ipam-driver', 'tsipam', '--subnet', '10.232.1.0/24']);
    net2 = net(['--ipam-driver', 'tsipam', '--subnet', '10.232.2.0/24']);
  }, 180_000);

  afterAll(async () => {
    scene.cleanup();
    outsideHost?.remove();
    await daemon?.stop();
  }, 120_000);

  it('-p 18080:80 is reached from another host, the host (127.0.0.1 and its own address), the same network (hairpin) and another network', () => {
    const w = web(net1, 80, '-p', '18080:80');
    const same = plain(net1);
    const other = plain(net2);
    expect(fromOutside(`http://${HOST}:18080/`)).toBe(`hello ${w}`);
    expect(fromHost('http://127.0.0.1:18080/')).toBe(`hello ${w}`);
    expect(fromHost(`http://${HOST}:18080/`)).toBe(`hello ${w}`);
    expect(fromCtr(same, `http://${HOST}:18080/`)).toBe(`hello ${w}`);
    expect(fromCtr(w, `http://${HOST}:18080/`)).toBe(`hello ${w}`); // the container reaches itself
    expect(fromCtr(other, `http://${HOST}:18080/`)).toBe(`hello ${w}`);
    // The container saw the outside client's own address: no SNAT for external clients.
    expect(run('docker', ['logs', w], { allowFail: true }) + run('sh', ['-c', `docker logs ${w} 2>&1`])).toMatch(/198\.18\.232\.2\]?:\d+/);
  });

  it('-p 127.0.0.1:18081:80 answers on the host’s loopback and not to another host', () => {
    const w = web(net1, 80, '-p', '127.0.0.1:18081:80');
    expect(fromHost('http://127.0.0.1:18081/')).toBe(`hello ${w}`);
    expect(fromOutside(`http://${HOST}:18081/`)).toBe('');
  });

  it('-p 18082:7/udp delivers datagrams, with the client’s own address', async () => {
    const c = udpRecorder(net1, '18082:7/udp');
    udpFromOutside(18082, 'udp-ok');
    expect(await eventually(() => received(c).includes('udp-ok'))).toBe(true);
    expect(received(c)).toMatch(/198\.18\.232\.2 udp-ok/);
  });

  it('-p 19000-19002:19000-19002 is one rule, and every port of it works', () => {
    const before = dnatRules().length;
    const w = web(net1, 19001, '-p', '19000-19002:19000-19002');
    const rules = dnatRules();
    expect(rules.length).toBe(before + 1);
    expect(rules.some((r) => r.includes('--dport 19000:19002'))).toBe(true);
    expect(fromOutside(`http://${HOST}:19001/`)).toBe(`hello ${w}`);
  });

  it('-p 80 picks a free ephemeral host port, logged by the daemon', () => {
    const w = web(net1, 80, '-p', '80');
    const cip = docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', w);
    const rule = dnatRules().find((r) => r.includes(`--to-destination ${cip}:80`));
    expect(rule).toBeDefined();
    const port = Number(/--dport (\d+)/.exec(rule!)![1]);
    const [lo, hi] = run('cat', ['/proc/sys/net/ipv4/ip_local_port_range']).trim().split(/\s+/).map(Number);
    expect(port).toBeGreaterThanOrEqual(lo!);
    expect(port).toBeLessThanOrEqual(hi!);
    expect(fromOutside(`http://${HOST}:${port}/`)).toBe(`hello ${w}`);
    expect(run('cat', [`${daemon.stateDir}/daemon.log`])).toContain(`:${port}/tcp -> ${cip}:80`);
    // docker port shows nothing for a remote driver; tsnet's own tooling does.
    const listed = JSON.parse(run(process.execPath, ['dist/bin/tsnet.js', 'port', 'ls', '--json', '--state-dir', daemon.stateDir]));
    expect(listed).toEqual(expect.arrayContaining([expect.objectContaining({ host: `0.0.0.0:${port}/tcp`, container: `${cip}:80` })]));
    expect(run(process.execPath, ['dist/bin/tsnet.js', 'port', 'ls', '--state-dir', daemon.stateDir])).toMatch(new RegExp(`0\\.0\\.0\\.0:${port}/tcp\\s+${cip.replace(/\./g, '\\.')}:80`));
  });

  it('host_binding_ipv4 sets the default bind address', () => {
    const local = net(['--ipam-driver', 'tsipam', '--subnet', '10.232.3.0/24', '-o', 'com.docker.network.bridge.host_binding_ipv4=127.0.0.1']);
    const w = web(local, 80, '-p', '18085:80');
    expect(fromHost('http://127.0.0.1:18085/')).toBe(`hello ${w}`);
    expect(fromOutside(`http://${HOST}:18085/`)).toBe('');
  });

  it('a host port already published gives a clear error from docker run and leaves nothing behind', () => {
    web(net1, 80, '-p', '18086:80');
    const rulesBefore = dnatRules();
    const name = uniqueName('dup');
    scene.track(name);
    const out = run('sh', ['-c', `docker run -d --name ${name} --network ${net1} -p 18086:80 ${IMAGE} sleep 60 2>&1 || true`]);
    expect(out).toMatch(/host port 0\.0\.0\.0:18086\/tcp is already (in use|published)/);
    expect(docker('inspect', '-f', '{{.State.Running}}', name)).toBe('false');
    expect(dnatRules()).toEqual(rulesBefore);
    // A port held by a host process is refused the same way.
    const holder = run('sh', ['-c', 'busybox nc -l -p 18087 >/dev/null 2>&1 & echo $!']).trim();
    try {
      const n2 = uniqueName('dup');
      scene.track(n2);
      expect(run('sh', ['-c', `docker run -d --name ${n2} --network ${net1} -p 18087:80 ${IMAGE} sleep 60 2>&1 || true`])).toMatch(/18087\/tcp is already in use/);
    } finally {
      run('kill', [holder], { allowFail: true });
    }
  });

  it('IPv6 host addresses on a dual-stack network; [::1] through the userland relay', async () => {
    const ds = net(['--ipv6', '--ipam-driver', 'tsipam', '--subnet', '10.232.4.0/24', '--subnet', 'fd77:232::/64']);
    const w = web(ds, 80, '-p', '18090:80');
    expect(fromOutside(`http://[${HOST6}]:18090/`)).toBe(`hello ${w}`);
    expect(fromOutside(`http://${HOST}:18090/`)).toBe(`hello ${w}`);
    // The outside host's request was NATed in the kernel (the container sees the client's own
    // address); [::1] cannot be NATed off the host, so the relay listening on [::] answers it,
    // as docker-proxy does.
    expect(fromHost('http://[::1]:18090/')).toBe(`hello ${w}`);
    expect(run('sh', ['-c', `docker logs ${w} 2>&1`])).toContain('fd99:232::2');
    expect(run('ss', ['-Hltn', 'sport = :18090']).trim()).toContain('[::]:18090');
    // The port is held in both families: a host program cannot take it, even with SO_REUSEADDR.
    const probe = run('python3', ['-c', `
import socket
for fam, ip in ((socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')):
    t = socket.socket(fam); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6: t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        t.bind((ip, 18090)); t.listen(); print('taken', ip)
    except OSError as e:
        print('held', ip, e.errno)
`]);
    expect(probe.trim().split('\n')).toEqual(['held 0.0.0.0 98', 'held :: 98']);
    // Asking for [::1] explicitly publishes there alone: no rule, just the relay.
    const lo = web(ds, 80, '-p', '[::1]:18091:80');
    expect(fromHost('http://[::1]:18091/')).toBe(`hello ${lo}`);
    expect(fromHost('http://127.0.0.1:18091/')).toBe('');
    expect(run('ip6tables', ['-t', 'nat', '-S', 'TSNET-DNAT'])).not.toContain('18091');
    // UDP too: the relay gives each client a flow of its own, and the answer comes back.
    const u = udpRecorder(ds, '[::1]:18092:7/udp');
    expect(await eventually(() => udpAsk('::1', 18092, 'lo6-udp') === 'lo6-udp')).toBe(true);
    expect(received(u)).toMatch(/fd77:232::1 lo6-udp/); // from the bridge's address: relayed
    expect(run('ip6tables', ['-t', 'nat', '-S', 'TSNET-DNAT'])).not.toContain('18092');
  });

  it('an IPv4-only container is reached on the host’s IPv6 addresses too, through the relay (as docker-proxy does); a daemon restart keeps it', async () => {
    const w = web(net1, 80, '-p', '18093:80');
    expect(fromOutside(`http://[${HOST6}]:18093/`)).toBe(`hello ${w}`);
    expect(fromHost('http://[::1]:18093/')).toBe(`hello ${w}`);
    expect(fromOutside(`http://${HOST}:18093/`)).toBe(`hello ${w}`);
    // No IPv6 rule could carry it (the container has no IPv6 address); the relay did.
    expect(run('ip6tables', ['-t', 'nat', '-S', 'TSNET-DNAT'])).not.toContain('18093');
    const wIp = docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', w);
    const listed = JSON.parse(run(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), '--state-dir', daemon.stateDir, '--json', 'port', 'ls']))
      .filter((r: { host: string }) => r.host.endsWith(':18093/tcp')).map((r: { host: string; container: string }) => `${r.host} ${r.container}`);
    expect(listed.sort()).toEqual([`0.0.0.0:18093/tcp ${wIp}:80`, `[::]:18093/tcp ${wIp}:80`]);
    expect(run('sh', ['-c', `docker logs ${w} 2>&1`])).toContain('10.232.1.1'); // the relay connects from the bridge's address
    // The relay lives in the daemon: a restarted daemon listens again from the stored mapping.
    await daemon.stop();
    expect(fromHost('http://[::1]:18093/')).toBe('');
    daemon = await startTsnet(daemon.stateDir, daemon.extraArgs);
    expect(fromHost('http://[::1]:18093/')).toBe(`hello ${w}`);
    // UDP the same way: an IPv6 client reaches the IPv4-only container through a flow of its own.
    const u = udpRecorder(net1, '18094:7/udp');
    expect(await eventually(() => udpAsk(HOST6, 18094, 'v6-to-v4', outside) === 'v6-to-v4')).toBe(true);
    expect(udpAsk('::1', 18094, 'lo-to-v4')).toBe('lo-to-v4');
    expect(received(u)).toMatch(/10\.232\.1\.1 v6-to-v4/);
    docker('rm', '-f', u);
    // The relay goes with the container: nothing listens on the port afterwards.
    docker('rm', '-f', w);
    expect(run('ss', ['-Hltn', 'sport = :18093']).trim()).toBe('');
    expect(fromHost('http://[::1]:18093/')).toBe('');
  });

  it('removing a container removes exactly its rules; rules grow linearly with containers', () => {
    const base = dnatRules().length;
    const ws = [0, 1, 2, 3].map((i) => web(net1, 80, '-p', `${18100 + i}:80`));
    expect(dnatRules().length).toBe(base + 4);
    docker('rm', '-f', ws[1]!);
    const left = dnatRules();
    expect(left.length).toBe(base + 3);
    expect(left.some((r) => r.includes('--dport 18101 '))).toBe(false);
    for (const w of [ws[0], ws[2], ws[3]]) docker('rm', '-f', w!);
    expect(dnatRules().length).toBe(base);

  });

  it('a replaced container gets the same client’s UDP flow: old conntrack entries are flushed', async () => {
    const first = udpRecorder(net1, '18110:7/udp');
    udpFromOutside(18110, 'one', 40110);
    expect(await eventually(() => received(first).includes('one'))).toBe(true);
    docker('rm', '-f', first);
    const second = udpRecorder(net1, '18110:7/udp');
    // Without the flush, the flow 40110 -> 18110 would still be DNATed to the first container's address.
    await new Promise((r) => setTimeout(r, 300));
    udpFromOutside(18110, 'two', 40110);
    expect(await eventually(() => received(second).includes('two'))).toBe(true);
  });
});
