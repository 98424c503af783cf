// tsmacvlan with a real dockerd. The "LAN" is a test namespace with a bridge on the other side of
// the parent (a veth pair) and the router's address on it.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, DockerScene, ensureDocker, startTsnet, type TsnetDaemon } from '../helpers/docker.js';
import { isRoot, linkNames, ok, run, uniqueName } from '../helpers/sys.js';

const hasDocker = isRoot && ok('which', ['dockerd']);

interface Lan {
  parent: string;
  ns: string;
  remove(): void;
}

/** A LAN namespace with a bridge and a router address, reached from the host through `parent`. */
function makeLan(router: string): Lan {
  const ns = uniqueName('lan');
  const parent = uniqueName('p'); // short: a VLAN name (parent.10) must fit 15 bytes
  run('ip', ['netns', 'add', ns]);
  run('ip', ['link', 'add', parent, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', ns]);
  run('ip', ['link', 'set', parent, 'up']);
  for (const args of [['link', 'add', 'lanbr', 'type', 'bridge'], ['link', 'set', 'uplink', 'master', 'lanbr'], ['link', 'set', 'uplink', 'up'], ['link', 'set', 'lanbr', 'up'], ['addr', 'add', router, 'dev', 'lanbr']]) {
    run('ip', ['-n', ns, ...args]);
  }
  return {
    parent, ns,
    remove() {
      run('ip', ['link', 'del', parent], { allowFail: true });
      run('ip', ['netns', 'del', ns], { allowFail: true });
    },
  };
}

describe.skipIf(!hasDocker)('tsmacvlan (real dockerd)', () => {
  let daemon: TsnetDaemon;
  const scene = new DockerScene();
  const lans: Lan[] = [];
  const ipOf = (c: string): string => docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c);
  const canPing = (c: string, target: string): boolean => ok('docker', ['exec', c, 'ping', '-c', '1', '-W', '2', target]);
  const macvlanNet = (lan: Lan, subnet: string, gw: string, extra: string[] = []): string => {
    const name = uniqueName('mv');
    docker('network', 'create', '-d', 'tsmacvlan', '--subnet', subnet, '--gateway', gw, '-o', `parent=${lan.parent}`, ...extra, name);
    scene.nets.push(name);
    return name;
  };

  beforeAll(async () => {
    await ensureDocker();
    daemon = await startTsnet();
  }, 180_000);
  afterAll(async () => {
    scene.cleanup();
    for (const l of lans) l.remove();
    await daemon?.stop();
  }, 60_000);

  it('bridge mode: containers reach each other and the router; the host reaches them through the shim; removal leaves nothing', () => {
    const lan = makeLan('10.254.1.1/24');
    lans.push(lan);
    const before = linkNames();
    const n = macvlanNet(lan, '10.254.1.0/24', '10.254.1.1', ['--aux-address', 'host=10.254.1.250', '-o', 'host_shim=true']);
    const a = scene.ctr(n);
    const b = scene.ctr(n);
    expect(docker('exec', a, 'ip', 'route')).toMatch(/default via 10\.254\.1\.1 dev eth0/);
    expect(canPing(a, ipOf(b))).toBe(true);
    expect(canPing(a, '10.254.1.1')).toBe(true);
    expect(ok('ping', ['-c', '1', '-W', '2', ipOf(a)])).toBe(true); // host → container via the shim
    // The router sees the container's own address and MAC: no NAT, no bridge on the host.
    expect(run('ip', ['-n', lan.ns, 'neigh', 'show', ipOf(a)])).toMatch(/lladdr/);
    docker('rm', '-f', a, b);
    docker('network', 'rm', n);
    scene.forgetNet(n);
    expect(linkNames().sort()).toEqual(before.sort());
  });

  it('-p on a tsmacvlan network starts the container as Docker\'s macvlan does, publishing nothing', () => {
    const lan = makeLan('10.254.5.1/24');
    lans.push(lan);
    const n = macvlanNet(lan, '10.254.5.0/24', '10.254.5.1');
    // A compose file with ports: runs on macvlan; the container is reached at its own address.
    const c = scene.ctr(n, '-p', '18871:80');
    expect(docker('inspect', '-f', '{{.State.Running}}', c)).toBe('true');
    expect(canPing(c, '10.254.5.1')).toBe(true);
    expect(run('iptables', ['-t', 'nat', '-S'])).not.toContain('18871');
    expect(run('ss', ['-Hltn', 'sport = :18871']).trim()).toBe('');
    expect(readFileSync(join(daemon.stateDir, 'daemon.log'), 'utf8')).toContain('tsmacvlan networks cannot publish ports: the container is reached at its own address');
  });

  it('private mode: containers cannot reach each other but reach the router; the interface prefix names the interface', () => {
    const lan = makeLan('10.254.2.1/24');
    lans.push(lan);
    // With a container interface prefix, which Docker's macvlan takes and ignores; tsmacvlan honours it.
    const n = macvlanNet(lan, '10.254.2.0/24', '10.254.2.1', ['-o', 'macvlan_mode=private', '-o', 'com.docker.network.container_iface_prefix=lan']);
    const a = scene.ctr(n);
    const b = scene.ctr(n);
    expect(docker('exec', a, 'ip', 'route')).toMatch(/default via 10\.254\.2\.1 dev lan0/);
    expect(canPing(a, '10.254.2.1')).toBe(true);
    expect(canPing(a, ipOf(b))).toBe(false);
  });

  it('bad input: no parent, missing or down parent, a VLAN parent, a mode clash, unknown options; each clear and leaves nothing', () => {
    const lan = makeLan('10.254.3.1/24');
    lans.push(lan);
    const before = linkNames();
    const create = (args: string): string => run('sh', ['-c', `docker network create -d tsmacvlan --subnet 10.254.3.0/24 ${args} ${uniqueName('bad')} 2>&1 || true`]);
    expect(create('')).toMatch(/needs -o parent=/);
    expect(create('-o parent=tsntnope0')).toMatch(/does not exist/);
    // A VLAN parent is made on demand where the kernel has 802.1Q, and refused clearly where not.
    const probe = `${lan.parent}v`;
    const has8021q = ok('ip', ['link', 'add', 'link', lan.parent, 'name', probe, 'type', 'vlan', 'id', '9']);
    if (has8021q) run('ip', ['link', 'del', probe]);
    const vlanOut = create(`-o parent=${lan.parent}.10`);
    if (has8021q) expect(vlanOut).toMatch(/^[0-9a-f]{64}$/m);
    else expect(vlanOut).toMatch(/no 802\.1Q \(8021q\) support/);
    expect(create(`-o parent=${lan.parent} -o frob=1`)).toMatch(/does not know option "frob"/);
    run('ip', ['link', 'set', lan.parent, 'down']);
    expect(create(`-o parent=${lan.parent}`)).toMatch(/is down/);
    run('ip', ['link', 'set', lan.parent, 'up']);
    macvlanNet(lan, '10.254.4.0/24', '10.254.4.1');
    expect(create(`-o parent=${lan.parent} -o macvlan_mode=vepa`)).toMatch(/already used by a tsmacvlan network in bridge mode/);
    if (!has8021q) expect(linkNames().sort()).toEqual(before.sort());
  });
});
