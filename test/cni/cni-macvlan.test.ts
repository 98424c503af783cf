// The tsmacvlan CNI plugin against a test "LAN": a namespace with a bridge and a router address on
// the other side of the parent (a veth pair).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanNamespacesAfterEach, makeHostNs, makeNs } from '../helpers/netns.js';
import { isRoot, ok, ping, run, uniqueName } from '../helpers/sys.js';

const ROOT = new URL('../../', import.meta.url).pathname;
// What `tsnet cni install` has the plugins run without a daemon (bin/cni.ts, bundled).
const CNI_ENTRY = join(ROOT, 'dist/bin/cni-standalone.js');

describe.skipIf(!isRoot)('CNI tsmacvlan', () => {
  cleanNamespacesAfterEach();
  let stateDir: string;
  const lan = uniqueName('ml');
  const parent = uniqueName('mp');
  // The plugin runs in a namespace of its own as "the host" (see makeHostNs); the parent is there.
  let host: ReturnType<typeof makeHostNs>;

  const cni = (command: string, conf: object, env: Record<string, string>) => {
    const r = spawnSync(...host.argv(process.execPath, [CNI_ENTRY, 'tsmacvlan']), {
      input: JSON.stringify(conf), encoding: 'utf8',
      env: { PATH: process.env.PATH, TSNET_STATE_DIR: stateDir, CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni', ...env },
    });
    return { code: r.status, out: r.stdout ? JSON.parse(r.stdout) : undefined, raw: r.stdout + r.stderr };
  };
  const conf = (mode: string, subnet: string, gateway: string) => ({
    cniVersion: '1.1.0', name: uniqueName('mn'), type: 'tsmacvlan', master: parent, mode, ipam: { type: 'tsipam', subnet, gateway },
  });

  beforeAll(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'tsnt-mvc-'));
    host = makeHostNs('mvh');
    run('ip', ['netns', 'add', lan]);
    run('ip', ['-n', host.name, 'link', 'add', parent, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', lan]);
    run('ip', ['-n', host.name, 'link', 'set', parent, 'up']);
    for (const a of [['link', 'add', 'lanbr', 'type', 'bridge'], ['link', 'set', 'uplink', 'master', 'lanbr'], ['link', 'set', 'uplink', 'up'], ['link', 'set', 'lanbr', 'up'], ['addr', 'add', '10.254.9.1/24', 'dev', 'lanbr']]) run('ip', ['-n', lan, ...a]);
  });
  afterAll(() => {
    host.remove();
    run('ip', ['netns', 'del', lan], { allowFail: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('bridge mode: two containers reach each other and the router; DEL twice leaves nothing', () => {
    const c = conf('bridge', '10.254.9.0/24', '10.254.9.1');
    const a = makeNs('ma');
    const b = makeNs('mb');
    const ra = cni('ADD', c, { CNI_CONTAINERID: 'mva', CNI_NETNS: a.path, CNI_IFNAME: 'eth0' });
    const rb = cni('ADD', c, { CNI_CONTAINERID: 'mvb', CNI_NETNS: b.path, CNI_IFNAME: 'eth0' });
    expect(ra.code, ra.raw).toBe(0);
    expect(rb.code, rb.raw).toBe(0);
    expect(ra.out).toMatchObject({ interfaces: [{ name: 'eth0', sandbox: a.path }], ips: [{ address: '10.254.9.2/24', gateway: '10.254.9.1', interface: 0 }], routes: [{ dst: '0.0.0.0/0', gw: '10.254.9.1' }] });
    expect(JSON.parse(run('ip', ['-n', a.name, '-j', '-d', 'link', 'show', 'eth0']))[0].linkinfo).toMatchObject({ info_kind: 'macvlan', info_data: { mode: 'bridge' } });
    expect(ping(a.name, rb.out.ips[0].address.split('/')[0])).toBe(true);
    expect(ping(a.name, '10.254.9.1')).toBe(true);
    // IPv4-only: no IPv6 on the LAN-facing interface, so no SLAAC from a router on that LAN.
    expect(run('ip', ['netns', 'exec', a.name, 'cat', '/proc/sys/net/ipv6/conf/eth0/disable_ipv6']).trim()).toBe('1');
    expect(cni('CHECK', { ...c, prevResult: ra.out }, { CNI_CONTAINERID: 'mva', CNI_NETNS: a.path, CNI_IFNAME: 'eth0' }).code).toBe(0);
    for (const [ns, id] of [[a, 'mva'], [b, 'mvb']] as const) {
      expect(cni('DEL', c, { CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }).code).toBe(0);
      expect(cni('DEL', c, { CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }).code).toBe(0);
    }
    expect(run('ip', ['-n', a.name, '-o', 'link'])).not.toContain('eth0');
    // The addresses were released: asking for the first one again by name succeeds.
    const again = cni('ADD', { ...c, runtimeConfig: { ips: ['10.254.9.2/24'] } }, { CNI_CONTAINERID: 'mvc', CNI_NETNS: a.path, CNI_IFNAME: 'eth0' });
    expect(again.code, again.raw).toBe(0);
    expect(again.out.ips[0].address).toBe('10.254.9.2/24');
    cni('DEL', c, { CNI_CONTAINERID: 'mvc', CNI_NETNS: a.path, CNI_IFNAME: 'eth0' });
  });

  it('private mode isolates containers from each other, not from the router; bad master is a clear error', () => {
    const c = conf('private', '10.254.9.0/24', '10.254.9.1');
    const a = makeNs('pa');
    const b = makeNs('pb');
    const ra = cni('ADD', c, { CNI_CONTAINERID: 'pva', CNI_NETNS: a.path, CNI_IFNAME: 'eth0' });
    const rb = cni('ADD', c, { CNI_CONTAINERID: 'pvb', CNI_NETNS: b.path, CNI_IFNAME: 'eth0' });
    expect(ra.code, ra.raw).toBe(0);
    expect(ping(a.name, '10.254.9.1')).toBe(true);
    expect(ping(a.name, rb.out.ips[0].address.split('/')[0])).toBe(false);
    for (const [ns, id] of [[a, 'pva'], [b, 'pvb']] as const) cni('DEL', c, { CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' });
    const macvlans = (): string => run('ip', ['-n', host.name, '-o', 'link', 'show', 'type', 'macvlan']);
    const before = macvlans();
    const bad = cni('ADD', { ...c, master: 'tsntnothere0' }, { CNI_CONTAINERID: 'bad', CNI_NETNS: a.path, CNI_IFNAME: 'eth0' });
    expect(bad.out).toMatchObject({ code: 7, msg: expect.stringMatching(/does not exist/) });
    expect(macvlans()).toBe(before);
    expect(ok('ip', ['-n', a.name, 'link', 'show', 'eth0'])).toBe(false);
  });
});
