// One network, two runtimes: a network created through Docker (tsipam) and attached to by a CNI
// conflist naming its bridge. Addresses come from one pool, the containers reach each other and
// resolve each other's names through the network's resolver.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDocker, IMAGE, ROOT, startTsnet, type TsnetDaemon } from '../../bench/lab.js';
import { cleanNamespacesAfterEach, makeNs } from '../helpers/netns.js';
import { isRoot, ok, ping, run, uniqueName } from '../helpers/sys.js';

const hasDocker = isRoot && ok('which', ['dockerd']);

describe.skipIf(!hasDocker)('Docker and CNI containers on one tsbridge network', () => {
  cleanNamespacesAfterEach();
  let daemon: TsnetDaemon;
  let binDir: string;
  const net = uniqueName('two');
  const bridge = `tsnt${net.slice(-6)}`;
  const ctrs: string[] = [];

  beforeAll(async () => {
    await ensureDocker();
    daemon = await startTsnet();
    binDir = mkdtempSync(join(tmpdir(), 'tsnt-cnibin-'));
    run(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), 'cni', 'install', '--bin-dir', binDir]);
    run('docker', ['network', 'create', '-d', 'tsbridge', '--ipam-driver', 'tsipam', '--subnet', '10.248.5.0/24', '-o', `com.docker.network.bridge.name=${bridge}`, net]);
  }, 180_000);
  afterAll(async () => {
    for (const c of ctrs) run('docker', ['rm', '-f', c], { allowFail: true });
    run('docker', ['network', 'rm', net], { allowFail: true });
    await daemon?.stop();
    rmSync(binDir, { recursive: true, force: true });
  }, 60_000);

  it('shares the pool, the datapath and the names; CNI port mappings and runtime arguments work', async () => {
    const d1 = uniqueName('d');
    run('docker', ['run', '-d', '--name', d1, '--network', net, IMAGE, 'sh', '-c', 'mkdir -p /www && echo from-docker > /www/index.html && exec httpd -f -p 80 -h /www']);
    ctrs.push(d1);
    const dIp = run('docker', ['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', d1]).trim();

    const conf = {
      cniVersion: '1.1.0', name: `${net}-cni`, type: 'tsbridge', bridge, isGateway: true, isDefaultGateway: true, ipMasq: true,
      ipam: { type: 'tsipam' },
      runtimeConfig: {
        portMappings: [{ HostPort: 18777, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }], // containerd's capitalised keys
        mac: '02:00:00:00:77:01',
        aliases: { [`${net}-cni`]: ['cni-alias'] }, // Podman's per-network map
      },
    };
    const ns = makeNs('two');
    const env = { PATH: process.env.PATH!, TSNET_STATE_DIR: daemon.stateDir, CNI_COMMAND: 'ADD', CNI_PATH: binDir, CNI_CONTAINERID: 'two-cni', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=cni-pod' };
    const add = spawnSync(join(binDir, 'tsbridge'), [], { input: JSON.stringify(conf), encoding: 'utf8', env });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const result = JSON.parse(add.stdout);
    const cIp = result.ips[0].address.split('/')[0];
    try {
      expect(result.ips[0].address).toMatch(/^10\.248\.5\.\d+\/24$/);
      expect(cIp).not.toBe(dIp); // one pool: no collision with the Docker container
      expect(result.interfaces[2].mac).toBe('02:00:00:00:77:01');
      // The datapath is shared.
      expect(ping(ns.name, dIp)).toBe(true);
      expect(ok('docker', ['exec', d1, 'ping', '-c', '1', '-W', '2', cIp])).toBe(true);
      // Names both ways through the network's resolver.
      const viaGw = (name: string): string => run('docker', ['exec', d1, 'nslookup', name, '10.248.5.1'], { allowFail: true });
      expect(viaGw('cni-pod')).toContain(`Address: ${cIp}`);
      expect(viaGw('cni-alias')).toContain(`Address: ${cIp}`);
      let seen = '';
      for (let i = 0; i < 40 && !seen.includes(`Address: ${dIp}`); i++) {
        seen = run('ip', ['netns', 'exec', ns.name, 'busybox', 'nslookup', d1, '10.248.5.1'], { allowFail: true });
        if (!seen.includes(dIp)) await new Promise((r) => setTimeout(r, 250));
      }
      expect(seen).toContain(`Address: ${dIp}`);
      // The CNI port mapping publishes the CNI container (nc from the host through the mapping).
      run('sh', ['-c', `ip netns exec ${ns.name} busybox httpd -p 80 -h /proc/self 2>/dev/null || true`]);
      expect(run('curl', ['-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:18777/'], { allowFail: true })).not.toBe('000');
    } finally {
      const del = spawnSync(join(binDir, 'tsbridge'), [], { input: JSON.stringify(conf), encoding: 'utf8', env: { ...env, CNI_COMMAND: 'DEL' } });
      expect(del.status, del.stdout).toBe(0);
      run('sh', ['-c', `ip netns pids ${ns.name} | xargs -r kill`], { allowFail: true });
    }
    // The Docker network is Docker's: a CNI DEL of its last CNI attachment leaves it in place.
    expect(run('ip', ['-br', 'link', 'show', 'dev', bridge])).toContain(bridge);
    expect(run('iptables', ['-t', 'nat', '-S', 'TSNET-DNAT'])).not.toContain('18777');
  });
});
