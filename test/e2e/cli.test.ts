// The operator's tools against a daemon in a namespace host: every CLI command in both output
// modes, with the daemon up (control socket) and down (the store read directly, same answers);
// /metrics moved by the right amounts after an attach and a DNS burst; doctor finding each planted
// problem; the systemd unit.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterLab, type LabHost } from '../../bench/cluster-lab.js';
import { ROOT } from '../../bench/lab.js';
import { isRoot, ok, run } from '../helpers/sys.js';

const P = 'tsnt';
const canRun = isRoot && ok('which', ['etcd']);
const TSNET = join(ROOT, 'dist/bin/tsnet.js');
const DNS_QUERY = join(ROOT, 'test/fixtures/dns-query.mjs');

const conf = {
  cniVersion: '1.1.0', name: 'clia', type: 'tsbridge', bridge: `${P}cli0`, isGateway: true, isDefaultGateway: true, ipMasq: true,
  ipam: { type: 'tsipam', subnet: '10.96.8.0/24' },
};

describe.skipIf(!canRun)('tsnet CLI, metrics and doctor', () => {
  const lab = new ClusterLab({ prefix: P, net: 218, etcdPort: 23730, daemonArgs: ['--metrics-addr', '127.0.0.1:9464'] });
  let h: LabHost;
  let alphaIp = '';

  /** `tsnet ARGS` inside the lab host's namespace, pointed at its daemon and store. */
  function tsnet(args: string[], extra: string[] = []): { code: number; out: string; err: string } {
    const r = spawnSync('nsenter', [`--net=/run/netns/${h.ns}`, process.execPath, TSNET, '--state-dir', h.stateDir, '--api-socket', h.apiSocket, ...args, ...extra], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  }
  const json = (args: string[]): any => {
    const r = tsnet(['--json', ...args]);
    expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    return JSON.parse(r.out);
  };
  function scrape(): Promise<string> {
    return new Promise((resolve, reject) => {
      request({ socketPath: h.apiSocket, path: '/metrics' }, (res) => {
        let t = '';
        res.on('data', (c) => (t += c));
        res.on('end', () => resolve(t));
      }).on('error', reject).end();
    });
  }
  /** The value of one sample (0 when absent). */
  const sample = (text: string, name: string, labels: Record<string, string> = {}): number => {
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `) ? want.every((w) => l.includes(w)) : false);
    return line ? Number(line.trim().split(/\s+/).pop()) : 0;
  };

  beforeAll(async () => {
    await lab.up(1);
    h = lab.host(1);
    const a = lab.cni(h, 'ADD', { ...conf, runtimeConfig: { portMappings: [{ hostPort: 8085, containerPort: 80, protocol: 'tcp' }] } }, `${P}cl1`, 'K8S_POD_NAME=alpha');
    expect(a.code, JSON.stringify(a.out)).toBe(0);
    alphaIp = a.out.ips[0].address.split('/')[0];
  }, 120_000);
  afterAll(() => lab.down());

  let online: Record<string, unknown> = {};

  it('every listing command, tables and --json, with the daemon up', () => {
    const nets = json(['network', 'ls']);
    expect(nets).toEqual([expect.objectContaining({ id: 'cni-clia', name: 'clia', driver: 'tsbridge', subnets: ['10.96.8.0/24'], gateways: ['10.96.8.1'], interface: `${P}cli0`, endpoints: 1 })]);
    const table = tsnet(['network', 'ls']);
    expect(table.code).toBe(0);
    expect(table.out.split('\n')[0]).toMatch(/^NETWORK ID\s+NAME\s+DRIVER\s+SUBNETS/);
    expect(table.out).toMatch(/cni-clia\s+clia\s+tsbridge\s+10\.96\.8\.0\/24/);
    expect(table.err).toBe(''); // from the daemon: no "daemon not running" note

    const inspect = json(['network', 'inspect', 'clia']);
    expect(inspect.record.state.bridge).toBe(`${P}cli0`);
    expect(inspect.endpoints).toHaveLength(1);
    expect(tsnet(['network', 'inspect', 'clia']).out).toMatch(/Driver:\s+tsbridge[\s\S]*ENDPOINT ID/);
    expect(tsnet(['network', 'inspect', 'nosuch']).code).toBe(3);

    const eps = json(['endpoint', 'ls', '--network', 'clia']);
    expect(eps).toEqual([expect.objectContaining({ networkName: 'clia', addresses: [`${alphaIp}/24`], names: expect.arrayContaining(['alpha']), ports: [expect.stringContaining(':8085->80/tcp')] })]);
    expect(tsnet(['endpoint', 'ls']).out).toContain(`${alphaIp}/24`);

    const pools = json(['ipam', 'ls']);
    const pool = pools.find((p: { subnet: string }) => p.subnet === '10.96.8.0/24');
    expect(pool).toMatchObject({ used: 2, size: '254' }); // the gateway and alpha
    expect(tsnet(['ipam', 'ls']).out).toMatch(/10\.96\.8\.0\/24\s+\S+\s+2\s+254\s+0\.8/);

    expect(json(['port', 'ls'])).toEqual([expect.objectContaining({ host: '0.0.0.0:8085/tcp', container: `${alphaIp}:80` })]);

    expect(json(['dns', 'lookup', 'alpha', '--network', 'clia']).result).toEqual({ kind: 'answer', addresses: [alphaIp] });
    expect(tsnet(['dns', 'lookup', 'alpha.tsnet.internal', '--network', 'clia']).out.trim()).toBe(alphaIp);
    expect(tsnet(['dns', 'lookup', 'nobody.tsnet.internal', '--network', 'clia']).code).toBe(3);

    const gc = json(['gc']);
    expect(gc).toEqual({ endpoints: [], repairs: [] });
    expect(tsnet(['gc']).out).toMatch(/0 endpoint\(s\)/);
    expect(tsnet(['network', 'bogus']).code).toBe(2);
    expect(tsnet(['network', 'ls', '--help']).code).toBe(0);
    online = { nets, eps, pools, ports: json(['port', 'ls']), dns: json(['dns', 'lookup', 'alpha', '--network', 'clia']) };
  });

  it('network rm: refused while containers are attached; --force removes endpoints, bridge, rules, host port and pool', () => {
    const rmConf = { ...conf, name: 'clirm', bridge: `${P}cli1`, ipam: { type: 'tsipam', subnet: '10.96.9.0/24' } };
    const a = lab.cni(h, 'ADD', { ...rmConf, runtimeConfig: { portMappings: [{ hostPort: 8086, containerPort: 80, protocol: 'tcp' }] } }, `${P}cl3`);
    expect(a.code, JSON.stringify(a.out)).toBe(0);
    const nat = (): string => run('ip', ['netns', 'exec', h.ns, 'iptables', '-t', 'nat', '-S']);
    expect(nat()).toContain('10.96.9.0/24');

    const refused = tsnet(['network', 'rm', 'clirm']);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('has 1 endpoint(s)');
    expect(run('ip', ['-n', h.ns, '-br', 'link'])).toContain(`${P}cli1`);

    const removed = json(['network', 'rm', 'clirm', '--force']);
    expect(removed).toMatchObject({ network: 'cni-clirm', endpoints: [expect.any(String)], pools: ['10.96.9.0/24'] });
    const links = run('ip', ['-n', h.ns, '-br', 'link']);
    expect(links).not.toContain(`${P}cli1`);
    expect(links).not.toContain(`tsv${(removed.endpoints[0] as string).slice(0, 12)}`);
    expect(nat()).not.toMatch(/10\.96\.9\.0\/24|dport 8086/);
    expect(json(['ipam', 'ls']).map((p: { subnet: string }) => p.subnet)).not.toContain('10.96.9.0/24');
    expect(tsnet(['network', 'rm', 'clirm']).code).toBe(3); // gone: not found
    run('ip', ['netns', 'del', `${P}cl3`], { allowFail: true });
  });

  it('/metrics moves by the right amounts after an attach and a DNS burst', async () => {
    const before = await scrape();
    const QUERIES = 25;
    for (let i = 0; i < QUERIES; i++) expect(run('ip', ['netns', 'exec', `${P}cl1`, process.execPath, DNS_QUERY, '10.96.8.1', 'alpha']).trim()).toBe('NOERROR');
    const b = lab.cni(h, 'ADD', conf, `${P}cl2`, 'K8S_POD_NAME=beta');
    expect(b.code).toBe(0);
    const after = await scrape();
    const d = (name: string, labels: Record<string, string> = {}): number => sample(after, name, labels) - sample(before, name, labels);
    expect(d('tsnet_dns_queries_total', { outcome: 'local' })).toBe(QUERIES);
    // Local names are answered by the native responder's table: counted above, never timed.
    expect(d('tsnet_dns_query_seconds_count', { outcome: 'local' })).toBe(0);
    expect(d('tsnet_protocol_calls_total', { front: 'cni', call: 'tsbridge ADD' })).toBe(1);
    expect(d('tsnet_protocol_call_seconds_count', { front: 'cni', call: 'tsbridge ADD' })).toBe(1);
    expect(d('tsnet_endpoints', { network: 'cni-clia' })).toBe(1);
    expect(d('tsnet_ipam_pool_addresses', { subnet: '10.96.8.0/24', state: 'used' })).toBe(1);
    expect(sample(after, 'tsnet_networks', { driver: 'tsbridge' })).toBe(1);
    // The DNS replies crossed alpha's veth: its receive counter is at least 25 replies' bytes.
    expect(d('tsnet_endpoint_receive_bytes_total')).toBeGreaterThan(QUERIES * 40);
    // A failing call is counted with its error code.
    const bad = lab.cni(h, 'ADD', { ...conf, ipam: { type: 'tsipam', subnet: '999.96.8.0/24' } }, `${P}cl3`);
    expect(bad.code).not.toBe(0);
    const errs = sample(await scrape(), 'tsnet_protocol_errors_total', { front: 'cni', call: 'tsbridge ADD' });
    expect(errs).toBeGreaterThanOrEqual(1);
    expect(lab.cni(h, 'DEL', conf, `${P}cl2`).code).toBe(0);
  });

  it('metrics on TCP only at a loopback address', async () => {
    const text = run('ip', ['netns', 'exec', h.ns, 'curl', '-sf', 'http://127.0.0.1:9464/metrics']);
    expect(text).toMatch(/^tsnet_protocol_calls_total\{front="cni",call="tsbridge ADD"\} \d+$/m);
    expect(ok('ip', ['netns', 'exec', h.ns, 'curl', '-sf', '--max-time', '1', `http://${h.ip}:9464/metrics`])).toBe(false);
    const r = tsnet(['serve', '--metrics-addr', '10.218.0.11:9464', '--plugin-dir', join(h.dir, 'p2'), '--cni-socket', join(h.dir, 'c2.sock')], []);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/loopback/);
  });

  it('a second daemon in the same network namespace is refused, naming the first; the first is untouched', () => {
    const other = mkdtempSync(join(tmpdir(), 'tsnt-second-'));
    try {
      const chainsBefore = run('ip', ['netns', 'exec', h.ns, 'iptables', '-t', 'nat', '-S']);
      const r = spawnSync('nsenter', [`--net=/run/netns/${h.ns}`, process.execPath, TSNET, '--state-dir', other, '--api-socket', join(other, 'api.sock'),
        'serve', '--plugin-dir', join(other, 'plugins'), '--cni-socket', join(other, 'cni.sock')], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`another tsnet daemon \\(pid ${h.pid}, state ${h.stateDir}\\) already runs in this network namespace`));
      // Refused before it touched anything: no store, no sockets, the first daemon's rules as they were.
      expect(ok('test', ['-e', join(other, 'tsnet.db')])).toBe(false);
      expect(ok('test', ['-e', join(other, 'plugins')])).toBe(false);
      expect(run('ip', ['netns', 'exec', h.ns, 'iptables', '-t', 'nat', '-S'])).toBe(chainsBefore);
      expect(json(['network', 'ls']).map((n: { name: string }) => n.name)).toContain('clia');
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('doctor: a healthy host passes; each planted problem is found with what to do', async () => {
    const healthy = json(['doctor', '--docker-socket', join(h.dir, 'none.sock'), '--plugin-dir', h.pluginDir, '--cluster-store', lab.etcdUrl]);
    const byId = (fs: Array<{ id: string; level: string }>, id: string): string[] => fs.filter((f) => f.id === id).map((f) => f.level);
    for (const id of ['kernel.veth', 'kernel.bridge', 'kernel.vxlan', 'kernel.macvlan', 'iptables.backend', 'iptables.forward', 'sysctl.ip_forward', 'plugins.sockets', 'daemon.api', 'daemon.claim', 'etcd.reachable', 'subnet.overlap', 'leaks.links', 'leaks.iptables', 'mtu.overlay']) {
      expect(byId(healthy, id), id).toEqual(['ok']);
    }
    expect(byId(healthy, 'docker.reachable')).toEqual(['warn']); // no dockerd for this host
    expect(tsnet(['doctor', '--docker-socket', join(h.dir, 'none.sock'), '--plugin-dir', h.pluginDir]).code).toBe(0);
    // Doctor for another store, with this daemon up: that store's networks get no rules from it.
    const other = mkdtempSync(join(tmpdir(), 'tsnt-docstate-'));
    try {
      const d = spawnSync('nsenter', [`--net=/run/netns/${h.ns}`, process.execPath, TSNET, '--json', '--state-dir', other, '--api-socket', h.apiSocket,
        'doctor', '--docker-socket', join(h.dir, 'none.sock'), '--plugin-dir', h.pluginDir], { encoding: 'utf8', timeout: 60_000 });
      const claim = (JSON.parse(d.stdout) as Array<{ id: string; level: string; title: string; fix?: string }>).find((f) => f.id === 'daemon.claim');
      expect(claim).toMatchObject({ level: 'error', title: expect.stringContaining(`serves another store: ${h.stateDir}`), fix: expect.stringContaining(`--state-dir ${h.stateDir}`) });
    } finally {
      rmSync(other, { recursive: true, force: true });
    }

    // An overlay network, then the underlay MTU lowered below what it needs.
    const ovl = lab.cni(h, 'ADD', { cniVersion: '1.1.0', name: 'clio', type: 'tsoverlay', ipam: { type: 'tsipam', subnet: '10.96.9.0/24' } }, `${P}cl4`);
    expect(ovl.code, JSON.stringify(ovl.out)).toBe(0);
    run('ip', ['-n', h.ns, 'link', 'set', 'eth0', 'mtu', '1400']);
    // The daemon stops: its sockets die, and nothing repairs what is planted next.
    await lab.stopDaemon(h, 'SIGTERM');
    run('ip', ['netns', 'exec', h.ns, 'sh', '-c', [
      'sysctl -qw net.ipv4.ip_forward=0',
      'iptables -P FORWARD DROP', 'iptables -D FORWARD -j TSNET-FORWARD',
      'ip route add 10.96.8.0/25 dev eth0',
    ].join(' && ')]);
    const owner = JSON.parse(run('ip', ['-j', '-n', h.ns, 'link', 'show', `${P}cli0`]))[0].ifalias as string;
    run('ip', ['-n', h.ns, 'link', 'add', 'tsv00000000leak', 'type', 'veth', 'peer', 'name', 'tsc00000000leak']);
    run('ip', ['-n', h.ns, 'link', 'set', 'tsv00000000leak', 'alias', owner]);

    const r = tsnet(['--json', 'doctor', '--docker-socket', join(h.dir, 'none.sock'), '--plugin-dir', h.pluginDir, '--cluster-store', 'etcd://127.0.0.1:1']);
    expect(r.code).toBe(1); // errors found
    const sick = JSON.parse(r.out) as Array<{ id: string; level: string; title: string; fix?: string }>;
    const expectFinding = (id: string, level: string, text: RegExp): void => {
      const f = sick.find((x) => x.id === id && x.level === level);
      expect(f, `${id} ${level}: ${JSON.stringify(sick.filter((x) => x.id === id))}`).toBeDefined();
      expect(f!.title).toMatch(text);
      expect(f!.fix, `${id} says what to do`).toBeTruthy();
    };
    expectFinding('sysctl.ip_forward', 'error', /ip_forward = 0/);
    expectFinding('iptables.forward', 'error', /DROP/);
    expectFinding('subnet.overlap', 'error', /10\.96\.8\.0\/24.*10\.96\.8\.0\/25/);
    expectFinding('leaks.links', 'warn', /tsv00000000leak/);
    expectFinding('leaks.iptables', 'warn', /differ/);
    expectFinding('plugins.sockets', 'error', /tsbridge/);
    expectFinding('daemon.api', 'warn', /no daemon/);
    expectFinding('etcd.reachable', 'error', /127\.0\.0\.1:1/);
    expectFinding('mtu.overlay', 'error', /MTU 1450.*1400/);
    expect(tsnet(['doctor', '--docker-socket', join(h.dir, 'none.sock'), '--plugin-dir', h.pluginDir]).out).toMatch(/\[FAIL\] net\.ipv4\.ip_forward = 0[\s\S]*fix: sysctl -w net\.ipv4\.ip_forward=1/);
    run('ip', ['netns', 'exec', h.ns, 'sh', '-c', 'sysctl -qw net.ipv4.ip_forward=1 && iptables -P FORWARD ACCEPT && ip route del 10.96.8.0/25 dev eth0 && ip link del tsv00000000leak && ip link set eth0 mtu 1500']);
  }, 120_000);

  it('with the daemon down, the same commands answer the same from the store', () => {
    expect(existsAnswer()).toBe(false);
    // Alpha and the overlay endpoint remain; the overlay network was added since: compare alpha's rows.
    const nets = json(['network', 'ls']);
    expect(nets.find((n: { id: string }) => n.id === 'cni-clia')).toEqual((online.nets as Array<{ id: string }>).find((n) => n.id === 'cni-clia'));
    const eps = json(['endpoint', 'ls', '--network', 'clia']);
    expect(eps).toEqual(online.eps);
    expect(json(['port', 'ls'])).toEqual(online.ports);
    expect(json(['dns', 'lookup', 'alpha', '--network', 'clia'])).toEqual(online.dns);
    const t = tsnet(['network', 'ls']);
    expect(t.err).toMatch(/daemon not running/);
    expect(t.out).toMatch(/cni-clia\s+clia/);
    expect(json(['ipam', 'ls']).find((p: { subnet: string }) => p.subnet === '10.96.8.0/24')).toMatchObject({ used: 2 });
    const gc = tsnet(['gc']);
    expect(gc.code, gc.err).toBe(0);
    expect(gc.err).toMatch(/daemon not running/);
  });

  it('install-service writes a unit ordered before Docker that restarts on failure', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsnt-unit-'));
    try {
      const r = json(['install-service', '--unit-dir', dir, '--no-start', '--', '--log-level', 'warn']);
      expect(r.enabled).toBe(false);
      const unit = readFileSync(join(dir, 'tsnet.service'), 'utf8');
      expect(unit).toMatch(/^Before=docker\.service/m);
      expect(unit).toMatch(/^Restart=on-failure$/m);
      expect(unit).toMatch(new RegExp(`^ExecStart=${process.execPath} ${TSNET} serve --state-dir ${h.stateDir} --log-level warn$`, 'm'));
      expect(unit).toMatch(/^WantedBy=multi-user\.target$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  function existsAnswer(): boolean {
    return ok('curl', ['-s', '--unix-socket', h.apiSocket, 'http://x/v1/health']);
  }
});
