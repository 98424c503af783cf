// tsnull and tshost with a real dockerd: no interface for the container beyond loopback, no
// docker_gwbridge, options refused, and for tshost the endpoint record lists the host's addresses.

import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, DockerScene, ensureDocker, IMAGE, startTsnet, type TsnetDaemon } from '../helpers/docker.js';
import { isRoot, linkNames, ok, run, uniqueName } from '../helpers/sys.js';

const hasDocker = isRoot && ok('which', ['dockerd']);

describe.skipIf(!hasDocker)('tsnull and tshost (real dockerd)', () => {
  let daemon: TsnetDaemon;
  const scene = new DockerScene();

  beforeAll(async () => {
    await ensureDocker();
    daemon = await startTsnet();
  }, 180_000);
  afterAll(async () => {
    scene.cleanup();
    await daemon?.stop();
  }, 60_000);

  it.each(['tsnull', 'tshost'])('%s: the container has loopback only and no default route; nothing is created on the host', (driver) => {
    const before = linkNames();
    const name = uniqueName('pl');
    docker('network', 'create', '-d', driver, name);
    scene.nets.push(name);
    const out = run('docker', ['run', '--rm', '--network', name, IMAGE, 'sh', '-c', 'ip -o link; echo ROUTES; ip route']);
    const links = out.split('ROUTES')[0]!.trim().split('\n').map((l) => l.split(': ')[1]);
    expect(links).toEqual(['lo']);
    expect(out.split('ROUTES')[1]!.trim()).toBe('');
    expect(linkNames()).toEqual(before);
    expect(docker('network', 'ls', '--format', '{{.Name}}')).not.toContain('docker_gwbridge');
    expect(run('sh', ['-c', `docker network create -d ${driver} -o some.option=1 ${uniqueName('bad')} 2>&1 || true`])).toMatch(/takes no options/);
  });

  it('tshost: the endpoint record lists the host’s addresses', () => {
    const host = uniqueName('th');
    docker('network', 'create', '-d', 'tshost', host);
    scene.nets.push(host);
    const c = scene.ctr(host);
    const db = new Database(join(daemon.stateDir, 'tsnet.db'), { readonly: true });
    try {
      const eps = db.prepare("select value from kv where key like 'ep/%'").all().map((r: any) => JSON.parse(r.value));
      // The host's uplink addresses (read here, not changed) must be in the record.
      const uplink = JSON.parse(run('ip', ['-j', 'route', 'show', 'default']))[0]?.dev ?? 'eth0';
      const hostAddrs = JSON.parse(run('ip', ['-j', 'addr', 'show', 'dev', uplink])).flatMap((l: any) => l.addr_info)
        .filter((a: any) => a.scope === 'global').map((a: any) => `${a.local}/${a.prefixlen}`);
      expect(hostAddrs.length).toBeGreaterThan(0);
      const mine = eps.find((e: any) => e.state.hostAddresses?.length);
      expect(mine.state.hostAddresses).toEqual(expect.arrayContaining(hostAddrs));
    } finally {
      db.close();
    }
    docker('rm', '-f', c);
  });
});
