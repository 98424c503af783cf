// The CNI executables driven directly (environment + stdin), as containerd, CRI-O and cnitool do.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanNamespacesAfterEach, makeHostNs, makeNs, removeNs } from '../helpers/netns.js';
import { ipJson, isRoot, linkNames, ok, ping, run, uniqueName } from '../helpers/sys.js';

const CNI_BIN = '/usr/lib/cni';
const ROOT = new URL('../../', import.meta.url).pathname;
// What `tsnet cni install` has the plugins run without a daemon (bin/cni.ts, bundled).
const CNI_ENTRY = join(ROOT, 'dist/bin/cni-standalone.js');
const hasRefPlugins = ok('test', ['-x', `${CNI_BIN}/portmap`]);

let stateDir: string;
// The plugins run in a namespace of their own as "the host" (see makeHostNs).
let host: ReturnType<typeof makeHostNs>;

interface Invocation {
  code: number;
  out: any;
  raw: string;
}

function cni(type: string, command: string, conf: object | string, env: Record<string, string> = {}): Invocation {
  const r = spawnSync(...host.argv(process.execPath, [CNI_ENTRY, type]), {
    input: typeof conf === 'string' ? conf : JSON.stringify(conf),
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TSNET_STATE_DIR: stateDir, CNI_COMMAND: command, CNI_PATH: CNI_BIN, ...env },
  });
  let out: any;
  try {
    out = r.stdout ? JSON.parse(r.stdout) : undefined;
  } catch {
    out = r.stdout;
  }
  return { code: r.status ?? -1, out, raw: r.stdout + r.stderr };
}

function refPlugin(type: string, command: string, conf: object, env: Record<string, string>): Invocation {
  const r = spawnSync(...host.argv(`${CNI_BIN}/${type}`, []), { input: JSON.stringify(conf), encoding: 'utf8', env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_PATH: CNI_BIN, ...env } });
  return { code: r.status ?? -1, out: r.stdout ? JSON.parse(r.stdout) : undefined, raw: r.stdout + r.stderr };
}

const netConf = (name: string, o: object = {}, version = '1.1.0') => ({
  cniVersion: version, name, type: 'tsbridge', bridge: `tsnt${name.slice(-6)}`, isGateway: true, isDefaultGateway: true, ipMasq: true,
  ipam: { type: 'tsipam', subnet: '10.245.0.0/24' }, ...o,
});

const attach = (ns: { name: string; path: string }, id: string, ifName = 'eth0') => ({ CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: ifName });

describe.skipIf(!isRoot)('CNI conformance (tsbridge, tsipam)', () => {
  cleanNamespacesAfterEach();
  beforeAll(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'tsnt-cni-'));
    host = makeHostNs('cnih');
  });
  afterAll(() => {
    host.remove();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('VERSION answers in the version asked and lists 0.3.0 … 1.1.0', () => {
    for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
      const r = cni('tsbridge', 'VERSION', { cniVersion: v });
      expect(r.code).toBe(0);
      expect(r.out).toEqual({ cniVersion: v, supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    }
  });

  it.each(['0.3.1', '0.4.0', '1.0.0', '1.1.0'])('ADD, CHECK, DEL with %s result shapes; the containers talk', (version) => {
    const name = uniqueName('v');
    const conf = netConf(name, { ipam: { type: 'tsipam', subnet: `10.245.${['0.3.1', '0.4.0', '1.0.0', '1.1.0'].indexOf(version) + 10}.0/24` } }, version);
    const a = makeNs('ca');
    const b = makeNs('cb');
    const ra = cni('tsbridge', 'ADD', conf, attach(a, 'ctra'));
    const rb = cni('tsbridge', 'ADD', conf, attach(b, 'ctrb'));
    expect(ra.code, ra.raw).toBe(0);
    expect(rb.code, rb.raw).toBe(0);
    expect(ra.out.cniVersion).toBe(version);
    const ip = ra.out.ips[0];
    if (version.startsWith('0.')) expect(ip.version).toBe('4');
    else expect(ip.version).toBeUndefined();
    expect(ra.out.interfaces[ip.interface]).toMatchObject({ name: 'eth0', sandbox: a.path });
    const bAddr = rb.out.ips[0].address.split('/')[0];
    expect(ping(a.name, bAddr)).toBe(true);
    // An IPv4-only network's interface has IPv6 off (as Docker since CVE-2024-32473): no link-local
    // address, no router solicitations; the container's loopback keeps ::1.
    expect(run('ip', ['netns', 'exec', a.name, 'cat', '/proc/sys/net/ipv6/conf/eth0/disable_ipv6']).trim()).toBe('1');
    expect(run('ip', ['-n', a.name, '-6', 'addr', 'show', 'dev', 'eth0']).trim()).toBe('');
    expect(run('ip', ['-n', a.name, '-6', 'addr', 'show', 'dev', 'lo'])).toContain('::1');
    expect(ping(a.name, ip.gateway)).toBe(true);
    if (version !== '0.3.1') {
      expect(cni('tsbridge', 'CHECK', { ...conf, prevResult: ra.out }, attach(a, 'ctra')).code).toBe(0);
    }
    for (const [ns, id] of [[a, 'ctra'], [b, 'ctrb']] as const) {
      const del = cni('tsbridge', 'DEL', conf, attach(ns, id));
      expect(del.code, del.raw).toBe(0);
      expect(del.out).toBeUndefined(); // DEL prints nothing on success
    }
    expect(linkNames(host.name)).not.toContain(conf.bridge); // the network went with its last attachment
  });

  it('error codes: 1 version, 4 environment, 6 decoding, 7 configuration, 50 status', () => {
    const ns = makeNs('e');
    const conf = netConf(uniqueName('e'));
    const expectCode = (r: Invocation, code: number, msg: RegExp) => {
      expect(r.code).not.toBe(0);
      expect(r.out.code).toBe(code);
      expect(r.out.msg).toMatch(msg);
    };
    expectCode(cni('tsbridge', 'ADD', { ...conf, cniVersion: '9.9.9' }, attach(ns, 'x')), 1, /incompatible CNI version/);
    expectCode(cni('tsbridge', 'ADD', conf, { CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }), 4, /CNI_CONTAINERID/);
    expectCode(cni('tsbridge', 'ADD', conf, { ...attach(ns, 'x'), CNI_IFNAME: 'bad/name' }), 4, /CNI_IFNAME/);
    expectCode(cni('tsbridge', 'ADD', '{not json', attach(ns, 'x')), 6, /not JSON/);
    expectCode(cni('tsbridge', 'ADD', { ...conf, ipam: { type: 'tsipam', subnet: '10.245.1.7/24' } }, attach(ns, 'x')), 7, /host bits/);
    expectCode(cni('tsbridge', 'ADD', { ...conf, name: 'bad name' }, attach(ns, 'x')), 7, /name/);
    expectCode(cni('tsbridge', 'ADD', conf, { ...attach(ns, 'x'), CNI_ARGS: 'FOO=bar' }), 4, /unknown key/);
    expectCode(cni('tsbridge', 'CHECK', { ...conf, cniVersion: '0.3.1' }, attach(ns, 'x')), 1, /CHECK needs/);
    // A bridge tsnet did not make is not taken over (nor touched): the error says which option to change.
    run('ip', ['-n', host.name, 'link', 'add', conf.bridge, 'type', 'bridge']);
    const taken = cni('tsbridge', 'ADD', conf, attach(ns, 'x'));
    expect(taken.code).not.toBe(0);
    expect(taken.out.msg).toMatch(/already exists on the host.*CNI: "bridge"/);
    expect(ipJson(host.name, 'addr', 'show', 'dev', conf.bridge)[0].addr_info).toEqual([]);
    expect(ipJson(host.name, 'link', 'show', 'dev', conf.bridge)[0].flags).not.toContain('UP');
    run('ip', ['-n', host.name, 'link', 'del', conf.bridge]);
    // A subnet the host reaches directly through another interface is refused (error 7) before
    // anything is made; one reached through a gateway is the user's to narrow.
    const lan = uniqueName('ln');
    for (const a of [['link', 'add', lan, 'type', 'bridge'], ['addr', 'add', '10.245.98.1/24', 'dev', lan], ['link', 'set', lan, 'up'],
      ['route', 'add', '10.245.96.0/22', 'via', '10.245.98.254']]) run('ip', ['-n', host.name, ...a]);
    const direct = netConf(uniqueName('o'), { ipam: { type: 'tsipam', subnet: '10.245.98.0/25' } });
    expectCode(cni('tsbridge', 'ADD', direct, attach(ns, 'o1')), 7, new RegExp(`overlaps 10\\.245\\.98\\.0/24, which this host reaches directly through ${lan}`));
    expect(linkNames(host.name)).not.toContain(direct.bridge);
    // Nor is the pool made for it, or its gateway address, left in the store.
    const pools = spawnSync(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), '--state-dir', stateDir, '--api-socket', join(stateDir, 'none.sock'), 'ipam', 'ls'], { encoding: 'utf8' });
    expect(pools.status, pools.stderr).toBe(0);
    expect(pools.stdout).not.toContain('10.245.98.0/25');
    const routed = netConf(uniqueName('r'), { ipam: { type: 'tsipam', subnet: '10.245.97.0/24' } });
    expect(cni('tsbridge', 'ADD', routed, attach(ns, 'r1')).code).toBe(0);
    expect(cni('tsbridge', 'DEL', routed, attach(ns, 'r1')).code).toBe(0);
    run('ip', ['-n', host.name, 'link', 'del', lan]);
    expect(cni('tsbridge', 'STATUS', conf).code).toBe(0);
    const saved = stateDir;
    stateDir = '/dev/null/tsnet'; // not a directory: the store cannot open
    try {
      expectCode(cni('tsbridge', 'STATUS', conf), 50, /not available/);
    } finally {
      stateDir = saved;
    }
    expect(linkNames(host.name).filter((l) => l.startsWith('tsv'))).toEqual([]);
  });

  it('DEL is idempotent: twice, without netns, after the netns is gone, and for something never added', () => {
    const conf = netConf(uniqueName('d'), { ipam: { type: 'tsipam', subnet: '10.245.20.0/24' } });
    const ns = makeNs('d');
    expect(cni('tsbridge', 'ADD', conf, attach(ns, 'dd')).code).toBe(0);
    removeNs(ns);
    expect(cni('tsbridge', 'DEL', conf, attach(ns, 'dd')).code).toBe(0);
    expect(cni('tsbridge', 'DEL', conf, attach(ns, 'dd')).code).toBe(0);
    expect(cni('tsbridge', 'DEL', conf, { CNI_CONTAINERID: 'dd', CNI_IFNAME: 'eth0' }).code).toBe(0);
    expect(cni('tsbridge', 'DEL', conf, { CNI_CONTAINERID: 'never', CNI_IFNAME: 'eth0' }).code).toBe(0);
    expect(linkNames(host.name)).not.toContain(conf.bridge);
  });

  it('ADD twice for the same container and ifname fails clearly and leaves the first alone', () => {
    const conf = netConf(uniqueName('t'), { ipam: { type: 'tsipam', subnet: '10.245.21.0/24' } });
    const ns = makeNs('t');
    const first = cni('tsbridge', 'ADD', conf, attach(ns, 'twice'));
    expect(first.code).toBe(0);
    const second = cni('tsbridge', 'ADD', conf, attach(ns, 'twice'));
    expect(second.code).not.toBe(0);
    expect(second.out.msg).toMatch(/already has eth0/);
    expect(ipJson(ns.name, 'addr', 'show', 'dev', 'eth0')[0].addr_info.map((a: any) => a.local)).toContain(first.out.ips[0].address.split('/')[0]);
    expect(cni('tsbridge', 'CHECK', { ...conf, prevResult: first.out }, attach(ns, 'twice')).code).toBe(0);
    expect(cni('tsbridge', 'DEL', conf, attach(ns, 'twice')).code).toBe(0);
  });

  it('CHECK detects a missing interface, a wrong address and a missing route', () => {
    const conf = netConf(uniqueName('k'), { ipam: { type: 'tsipam', subnet: '10.245.22.0/24' } });
    const ns = makeNs('k');
    const r = cni('tsbridge', 'ADD', conf, attach(ns, 'chk'));
    const check = () => cni('tsbridge', 'CHECK', { ...conf, prevResult: r.out }, attach(ns, 'chk'));
    expect(check().code).toBe(0);
    run('ip', ['-n', ns.name, 'route', 'del', 'default']);
    expect(check().out.msg).toMatch(/route to 0\.0\.0\.0\/0 is missing/);
    run('ip', ['-n', ns.name, 'addr', 'flush', 'dev', 'eth0']);
    expect(check().out.msg).toMatch(/address .* is missing/);
    run('ip', ['-n', ns.name, 'link', 'del', 'eth0']);
    expect(check().out.msg).toMatch(/eth0 is missing/);
    expect(cni('tsbridge', 'DEL', conf, attach(ns, 'chk')).code).toBe(0);
  });

  it('50 concurrent ADDs on one network give 50 distinct addresses', async () => {
    const conf = netConf(uniqueName('c'), { ipam: { type: 'tsipam', subnet: '10.245.64.0/24' } });
    const nss = Array.from({ length: 50 }, () => makeNs('p'));
    const { spawn } = await import('node:child_process');
    const runAsync = (command: string, ns: { path: string }, id: string): Promise<Invocation> =>
      new Promise((resolve) => {
        const p = spawn(...host.argv(process.execPath, [CNI_ENTRY, 'tsbridge']), {
          env: { PATH: process.env.PATH, TSNET_STATE_DIR: stateDir, CNI_COMMAND: command, CNI_PATH: CNI_BIN, CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' },
        });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('exit', (code) => resolve({ code: code ?? -1, out: out ? JSON.parse(out) : undefined, raw: out }));
        p.stdin.end(JSON.stringify(conf));
      });
    const results = await Promise.all(nss.map((ns, i) => runAsync('ADD', ns, `par${i}`)));
    for (const r of results) expect(r.code, r.raw).toBe(0);
    const addrs = results.map((r) => r.out.ips[0].address);
    expect(new Set(addrs).size).toBe(50);
    const dels = await Promise.all(nss.map((ns, i) => runAsync('DEL', ns, `par${i}`)));
    for (const r of dels) expect(r.code, r.raw).toBe(0);
    expect(linkNames(host.name)).not.toContain(conf.bridge);
  }, 120_000);

  it('GC frees attachments that are no longer valid, and only those', () => {
    const conf = netConf(uniqueName('g'), { ipam: { type: 'tsipam', subnet: '10.245.23.0/24' } });
    const keep = makeNs('gk');
    const stale = makeNs('gs');
    const k = cni('tsbridge', 'ADD', conf, attach(keep, 'keep'));
    const s = cni('tsbridge', 'ADD', conf, attach(stale, 'stale'));
    expect(s.code).toBe(0);
    removeNs(stale); // the runtime lost it without DEL
    const gc = cni('tsbridge', 'GC', { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] });
    expect(gc.code, gc.raw).toBe(0);
    // The freed address is handed out again; the kept one still works.
    const again = makeNs('ga');
    const r = cni('tsbridge', 'ADD', { ...conf, runtimeConfig: { ips: [s.out.ips[0].address] } }, attach(again, 'again'));
    expect(r.code, r.raw).toBe(0);
    expect(ping(keep.name, k.out.ips[0].gateway)).toBe(true);
    for (const [ns, id] of [[keep, 'keep'], [again, 'again']] as const) cni('tsbridge', 'DEL', conf, attach(ns, id));
  });

  it.skipIf(!hasRefPlugins)('delegates to another IPAM plugin (host-local) through CNI_PATH, and forwards DEL to it', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tsnt-hl-'));
    const conf = netConf(uniqueName('hl'), { isGateway: false, isDefaultGateway: false, ipam: { type: 'host-local', subnet: '10.245.30.0/24', dataDir } }, '1.0.0');
    const ns = makeNs('hl');
    try {
      const r = cni('tsbridge', 'ADD', conf, attach(ns, 'hostlocal'));
      expect(r.code, r.raw).toBe(0);
      expect(r.out.ips[0].address).toBe('10.245.30.2/24'); // host-local's first address (it reserves .1 as gateway)
      expect(run('ls', [join(dataDir, conf.name)])).toContain('10.245.30.2');
      expect(cni('tsbridge', 'DEL', conf, attach(ns, 'hostlocal')).code).toBe(0);
      expect(run('ls', [join(dataDir, conf.name)])).not.toContain('10.245.30.2');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('the ipRanges capability: the runtime’s range (a node’s pod CIDR) when the conf names none, beside the configured ones', () => {
    const conf = netConf(uniqueName('ir'), { ipam: { type: 'tsipam' }, runtimeConfig: { ipRanges: [[{ subnet: '10.245.33.0/24' }]] } });
    const ns = makeNs('ir');
    const r = cni('tsbridge', 'ADD', conf, attach(ns, 'iprange'));
    expect(r.code, r.raw).toBe(0);
    expect(r.out.ips).toEqual([{ address: '10.245.33.2/24', gateway: '10.245.33.1', interface: 2 }]);
    expect(cni('tsbridge', 'CHECK', { ...conf, prevResult: r.out }, attach(ns, 'iprange')).code).toBe(0);
    expect(cni('tsbridge', 'DEL', conf, attach(ns, 'iprange')).code).toBe(0);
    // Runtime ranges and configured ones together, one subnet named twice being one (the result
    // lists IPv4 first, as for any dual-stack tsbridge network).
    const both = netConf(uniqueName('ir'), {
      ipam: { type: 'tsipam', subnet: '10.245.34.0/24', ranges: [[{ subnet: 'fd45:34::/64' }]] },
      runtimeConfig: { ipRanges: [[{ subnet: 'fd45:34::/64' }], [{ subnet: '10.245.34.0/24' }]] },
    });
    const r2 = cni('tsbridge', 'ADD', both, attach(ns, 'iprange2'));
    expect(r2.code, r2.raw).toBe(0);
    expect(r2.out.ips.map((i: any) => i.address)).toEqual(['10.245.34.2/24', 'fd45:34::2/64']);
    expect(cni('tsbridge', 'DEL', both, attach(ns, 'iprange2')).code).toBe(0);
    expect(cni('tsbridge', 'ADD', { ...conf, runtimeConfig: { ipRanges: [[{ subnet: '10.245.35.0/24', rangeStart: '10.245.35.10' }]] } }, attach(ns, 'x')).out.code).toBe(2);
    // tsipam with no range from anywhere is a configuration error, not a network without addresses.
    const none = cni('tsbridge', 'ADD', { ...conf, runtimeConfig: {} }, attach(ns, 'x'));
    expect(none.out.code).toBe(7);
    expect(none.out.msg).toMatch(/tsipam needs ipam.subnet, ipam.ranges or runtimeConfig.ipRanges/);
  });

  it('dual-stack through tsipam ranges: both families configured and reachable', () => {
    const conf = netConf(uniqueName('ds'), { ipam: { type: 'tsipam', ranges: [[{ subnet: '10.245.31.0/24' }], [{ subnet: 'fd45:31::/64' }]] } });
    const a = makeNs('da');
    const b = makeNs('db');
    const ra = cni('tsbridge', 'ADD', conf, attach(a, 'dsa'));
    const rb = cni('tsbridge', 'ADD', conf, attach(b, 'dsb'));
    try {
      expect(ra.code, ra.raw).toBe(0);
      expect(ra.out.ips.map((i: any) => i.address)).toEqual(['10.245.31.2/24', 'fd45:31::2/64']);
      expect(ra.out.routes).toEqual(expect.arrayContaining([{ dst: '::/0', gw: 'fd45:31::1' }]));
      expect(ok('ip', ['netns', 'exec', b.name, 'ping', '-6', '-c', '1', '-W', '2', 'fd45:31::2'])).toBe(true);
      expect(run('ip', ['netns', 'exec', a.name, 'cat', '/proc/sys/net/ipv6/conf/eth0/disable_ipv6']).trim()).toBe('0');
      expect(ping(b.name, '10.245.31.2')).toBe(true);
      // The bridge ends carry the IPv6 frames above with IPv6 off on themselves: no link-local
      // address and no routes of their own in the host's namespace.
      const bridgeEnds = linkNames(host.name).filter((l) => l.startsWith('tsv'));
      expect(bridgeEnds).toHaveLength(2);
      for (const l of bridgeEnds) {
        expect(run('ip', ['netns', 'exec', host.name, 'cat', `/proc/sys/net/ipv6/conf/${l}/disable_ipv6`]).trim()).toBe('1');
        expect(run('ip', ['-n', host.name, '-6', 'addr', 'show', 'dev', l]).trim()).toBe('');
        expect(run('ip', ['-n', host.name, '-6', 'route', 'show', 'table', 'all', 'dev', l]).trim()).toBe('');
      }
    } finally {
      for (const [ns, id] of [[a, 'dsa'], [b, 'dsb']] as const) cni('tsbridge', 'DEL', conf, attach(ns, id));
    }
  });

  it('one container on two networks at once (eth0, eth1 in parallel, as containerd does)', async () => {
    const c1 = netConf(uniqueName('m1'), { ipam: { type: 'tsipam', subnet: '10.245.32.0/24' } });
    const c2 = netConf(uniqueName('m2'), { isDefaultGateway: false, ipam: { type: 'tsipam', subnet: '10.245.33.0/24' } });
    const ns = makeNs('mm');
    const { spawn } = await import('node:child_process');
    const add = (conf: object, ifName: string): Promise<number> => new Promise((resolve) => {
      const p = spawn(...host.argv(process.execPath, [CNI_ENTRY, 'tsbridge']), {
        env: { PATH: process.env.PATH, TSNET_STATE_DIR: stateDir, CNI_COMMAND: 'ADD', CNI_PATH: CNI_BIN, CNI_CONTAINERID: 'multi', CNI_NETNS: ns.path, CNI_IFNAME: ifName },
      });
      p.on('exit', (code) => resolve(code ?? -1));
      p.stdin.end(JSON.stringify(conf));
    });
    expect(await Promise.all([add(c1, 'eth0'), add(c2, 'eth1')])).toEqual([0, 0]);
    const addrs = ipJson<any[]>(ns.name, 'addr', 'show').flatMap((l) => l.addr_info.map((a: any) => `${l.ifname}:${a.local}`));
    expect(addrs).toEqual(expect.arrayContaining(['eth0:10.245.32.2', 'eth1:10.245.33.2']));
    expect(cni('tsbridge', 'DEL', c1, attach(ns, 'multi', 'eth0')).code).toBe(0);
    expect(cni('tsbridge', 'DEL', c2, attach(ns, 'multi', 'eth1')).code).toBe(0);
  });

  it.skipIf(!hasRefPlugins)('chains before the reference portmap, tuning and bandwidth plugins, and tsipam serves the reference bridge', () => {
    const name = uniqueName('ch');
    // Debian's reference plugins speak CNI up to 1.0.0.
    const conf = netConf(name, { ipam: { type: 'tsipam', subnet: '10.245.24.0/24' } }, '1.0.0');
    const ns = makeNs('ch');
    const add = cni('tsbridge', 'ADD', conf, attach(ns, 'chain'));
    expect(add.code).toBe(0);
    const pm = { cniVersion: '1.0.0', name, type: 'portmap', capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ HostPort: 18555, ContainerPort: 80, Protocol: 'tcp' }] }, prevResult: add.out };
    const pmAdd = refPlugin('portmap', 'ADD', pm, attach(ns, 'chain'));
    expect(pmAdd.code, pmAdd.raw).toBe(0);
    expect(pmAdd.out.ips).toEqual(add.out.ips); // our result passed through the chain
    expect(run('ip', ['netns', 'exec', host.name, 'iptables', '-t', 'nat', '-S'])).toContain('--dport 18555');
    expect(refPlugin('portmap', 'DEL', pm, attach(ns, 'chain')).code).toBe(0);
    // And before the reference tuning plugin, which changes a sysctl inside the container.
    const tuning = { cniVersion: '1.0.0', name, type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '1' }, prevResult: add.out };
    const tu = refPlugin('tuning', 'ADD', tuning, attach(ns, 'chain'));
    expect(tu.code, tu.raw).toBe(0);
    expect(run('ip', ['netns', 'exec', ns.name, 'cat', '/proc/sys/net/ipv4/conf/eth0/arp_ignore']).trim()).toBe('1');
    expect(refPlugin('tuning', 'DEL', tuning, attach(ns, 'chain')).code).toBe(0);
    // And before the reference bandwidth plugin (Kubernetes' bandwidth annotations): it finds our
    // host end in the result, shapes its egress with tbf and redirects its ingress to an ifb.
    const bw = { cniVersion: '1.0.0', name, type: 'bandwidth', ingressRate: 8_000_000, ingressBurst: 100_000, egressRate: 8_000_000, egressBurst: 100_000, prevResult: add.out };
    const bwAdd = refPlugin('bandwidth', 'ADD', bw, attach(ns, 'chain'));
    expect(bwAdd.code, bwAdd.raw).toBe(0);
    const hostEnd = (add.out.interfaces as Array<{ name: string; sandbox?: string }>).find((i) => !i.sandbox && i.name.startsWith('tsv'))!.name;
    expect(run('tc', ['-n', host.name, 'qdisc', 'show', 'dev', hostEnd])).toContain('tbf');
    expect(run('ip', ['-n', host.name, '-br', 'link'])).toMatch(/^bwp/m);
    expect(refPlugin('bandwidth', 'DEL', bw, attach(ns, 'chain')).code).toBe(0);
    expect(run('ip', ['-n', host.name, '-br', 'link'])).not.toMatch(/^bwp/m);
    expect(cni('tsbridge', 'DEL', conf, attach(ns, 'chain')).code).toBe(0);

    // The reference bridge with tsipam as its IPAM plugin.
    const brConf = { cniVersion: '1.0.0', name: uniqueName('rb'), type: 'bridge', bridge: `tsntrb${name.slice(-4)}`, isGateway: true, ipam: { type: 'tsipam', subnet: '10.245.25.0/24' } };
    const wrapperDir = mkdtempSync(join(tmpdir(), 'tsnt-cnibin-'));
    run(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), 'cni', 'install', '--bin-dir', wrapperDir]);
    const ns2 = makeNs('rb');
    const env = { ...attach(ns2, 'refbr'), CNI_PATH: `${wrapperDir}:${CNI_BIN}`, TSNET_STATE_DIR: stateDir };
    try {
      const rb = refPlugin('bridge', 'ADD', brConf, env);
      expect(rb.code, rb.raw).toBe(0);
      expect(rb.out.ips[0]).toMatchObject({ address: '10.245.25.2/24', gateway: '10.245.25.1' });
      expect(refPlugin('bridge', 'DEL', brConf, env).code).toBe(0);
    } finally {
      run('ip', ['-n', host.name, 'link', 'del', brConf.bridge], { allowFail: true }); // the reference bridge leaves its bridge
      rmSync(wrapperDir, { recursive: true, force: true });
    }
  });
});
