// containerd as the CNI client: `ctr run --cni` with our conflist in /etc/cni/net.d and our
// plugins in /opt/cni/bin (where ctr looks). Uses the containerd that dockerd runs.

import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDocker, IMAGE, makeOutsideHost, ROOT } from '../../bench/lab.js';
import { isRoot, linkNames, ok, run, uniqueName } from '../helpers/sys.js';

const SOCK = '/var/run/docker/containerd/containerd.sock';
const NS = 'tsnt';
const hasCtr = isRoot && ok('which', ['ctr']) && ok('which', ['dockerd']);
const ctr = (...args: string[]): string => run('ctr', ['-a', SOCK, '-n', NS, ...args]);

describe.skipIf(!hasCtr)('containerd ctr run --cni with tsbridge', () => {
  const confDir = '/etc/cni/net.d';
  const binDir = '/opt/cni/bin';
  const name = uniqueName('cd');
  const confFile = join(confDir, `00-${name}.conflist`);
  const bridge = `tsnt${name.slice(-6)}`;
  const installed: string[] = [];
  let outside: { remove(): void };

  beforeAll(async () => {
    await ensureDocker();
    mkdirSync(confDir, { recursive: true });
    mkdirSync(binDir, { recursive: true });
    // Whatever `cni install` adds (every plugin and its conf) goes again afterwards; what was there stays.
    const before = new Set(readdirSync(binDir));
    run(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), 'cni', 'install', '--bin-dir', binDir]);
    for (const f of readdirSync(binDir)) if (!before.has(f)) installed.push(join(binDir, f));
    const others = readdirSync(confDir).filter((f) => f < `00-${name}.conflist`);
    if (others.length) throw new Error(`${confDir} has configs that sort before ours (${others.join(', ')}); ctr would use those`);
    writeFileSync(confFile, JSON.stringify({
      cniVersion: '1.0.0', name,
      plugins: [{ type: 'tsbridge', bridge, isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'tsipam', subnet: '10.246.1.0/24' } }],
    }));
    run('sh', ['-c', `docker save ${IMAGE} | ctr -a ${SOCK} -n ${NS} images import -`]);
    outside = makeOutsideHost(uniqueName('o'), '198.18.234.1', '198.18.234.2');
  }, 180_000);

  afterAll(() => {
    rmSync(confFile, { force: true });
    for (const f of installed) rmSync(f, { force: true });
    run('ctr', ['-a', SOCK, '-n', NS, 'images', 'rm', `docker.io/library/${IMAGE}`], { allowFail: true });
    outside?.remove();
  });

  it('two containers get addresses, reach each other, the gateway and an outside host; teardown leaves nothing', async () => {
    const a = uniqueName('a');
    const b = uniqueName('b');
    // A runs in the background; ctr sets up CNI before the task starts and removes it on exit.
    const bg = spawn('ctr', ['-a', SOCK, '-n', NS, 'run', '--rm', '--cni', `docker.io/library/${IMAGE}`, a, 'sleep', '30'], { stdio: 'ignore' });
    let aIp = '';
    for (let i = 0; i < 100 && !aIp; i++) {
      await new Promise((r) => setTimeout(r, 200));
      aIp = /inet (10\.246\.1\.\d+)\//.exec(run('ctr', ['-a', SOCK, '-n', NS, 'tasks', 'exec', '--exec-id', 'ip', a, 'ip', '-4', 'addr', 'show', 'eth0'], { allowFail: true }))?.[1] ?? '';
    }
    expect(aIp).toMatch(/^10\.246\.1\./);
    const aPorts = run('ip', ['-o', 'link', 'show', 'master', bridge]).split('\n').filter(Boolean).map((l) => l.split(': ')[1]!.split('@')[0]!);
    expect(aPorts).toHaveLength(1);
    const out = run('ctr', ['-a', SOCK, '-n', NS, 'run', '--rm', '--cni', `docker.io/library/${IMAGE}`, b, 'sh', '-c',
      `ip -4 addr show eth0; ping -c1 -W2 ${aIp} && echo PEER-OK; ping -c1 -W2 10.246.1.1 && echo GW-OK; ping -c1 -W2 198.18.234.2 && echo OUT-OK`], { allowFail: true });
    expect(out).toMatch(/inet 10\.246\.1\.\d+\/24/);
    expect(out).not.toContain(`inet ${aIp}/`);
    expect(out).toContain('PEER-OK');
    expect(out).toContain('GW-OK');
    expect(out).toContain('OUT-OK');
    ctr('tasks', 'kill', '-s', 'SIGKILL', a);
    await new Promise((r) => bg.on('exit', r));
    // Nothing of the network is left: no veth, no bridge (it went with its last attachment), no rules.
    for (let i = 0; i < 50 && linkNames().includes(bridge); i++) await new Promise((r) => setTimeout(r, 100));
    expect(linkNames()).not.toContain(bridge);
    for (const p of aPorts) expect(linkNames()).not.toContain(p);
    expect(run('iptables', ['-t', 'nat', '-S'])).not.toContain('10.246.1.0/24');
  }, 120_000);
});
