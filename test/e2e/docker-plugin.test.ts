// tsnet as a Docker managed plugin: `npm run package:docker-plugin` assembles the plugin offline,
// dockerd creates and enables it, and a network made with it carries traffic, gets NAT from the
// plugin's own iptables, and leaves nothing behind when removed.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../bench/lab.js';
import { docker, dockerFail, ensureDocker, IMAGE } from '../helpers/docker.js';
import { isRoot, linkNames, ok, run } from '../helpers/sys.js';

const hasDocker = isRoot && ok('which', ['dockerd']) && ok('which', ['busybox']);
const PLUGIN = 'tsnt-plugin:latest';
const NET = 'tsntpnet';

describe.skipIf(!hasDocker)('Docker managed plugin (real dockerd)', () => {
  const out = mkdtempSync(join(tmpdir(), 'tsnt-plugin-'));

  const cleanup = (): void => {
    dockerFail('rm', '-f', 'tsntpa');
    dockerFail('network', 'rm', NET);
    dockerFail('plugin', 'disable', '-f', PLUGIN);
    dockerFail('plugin', 'rm', '-f', PLUGIN);
  };

  beforeAll(async () => {
    await ensureDocker();
    cleanup();
    // The plugin's bind mounts (its store and run directory) must exist on the host.
    mkdirSync('/var/lib/tsnet', { recursive: true, mode: 0o700 });
    mkdirSync('/run/tsnet', { recursive: true, mode: 0o700 });
    run('bash', [join(ROOT, 'scripts/package-docker-plugin.sh'), out]);
  }, 180_000);
  afterAll(() => {
    cleanup();
    rmSync(out, { recursive: true, force: true });
  }, 60_000);

  it('docker plugin create + enable; a network made with it works and is removed without a trace', () => {
    docker('plugin', 'create', PLUGIN, out);
    docker('plugin', 'enable', PLUGIN);
    expect(docker('plugin', 'inspect', '-f', '{{.Enabled}} {{json .Config.Interface.Types}}', PLUGIN)).toMatch(/^true \[.*networkdriver.*ipamdriver.*\]$/);

    const id = docker('network', 'create', '-d', PLUGIN, '--ipam-driver', PLUGIN, '--subnet', '10.96.10.0/24', NET);
    const bridge = `tsb-${id.slice(0, 11)}`;
    expect(linkNames()).toContain(bridge);
    expect(run('ip', ['-o', 'addr', 'show', 'dev', bridge])).toContain('10.96.10.1/24');
    // The plugin's own iptables (from its rootfs) rendered NAT for the subnet in the host's tables.
    expect(run('iptables', ['-t', 'nat', '-S', 'TSNET-POSTROUTING'])).toContain(`-A TSNET-POSTROUTING -s 10.96.10.0/24 ! -o ${bridge} -j MASQUERADE`);

    docker('run', '-d', '--name', 'tsntpa', '--network', NET, IMAGE, 'sleep', '120');
    const ping = run('docker', ['run', '--rm', '--network', NET, IMAGE, 'ping', '-c', '2', '-W', '2', 'tsntpa']);
    expect(ping).toMatch(/2 packets transmitted, 2 packets received/);
    expect(run('docker', ['run', '--rm', '--network', NET, IMAGE, 'ping', '-c', '1', '-W', '2', '10.96.10.1'])).toMatch(/1 packets received/);

    docker('rm', '-f', 'tsntpa');
    docker('network', 'rm', NET);
    expect(linkNames()).not.toContain(bridge);
    expect(linkNames().filter((l) => /^tsv[0-9a-f]{12}$/.test(l))).toEqual([]);
    expect(run('iptables', ['-t', 'nat', '-S', 'TSNET-POSTROUTING'])).not.toContain('10.96.10.0/24');
    docker('plugin', 'disable', PLUGIN);
    docker('plugin', 'rm', PLUGIN);
  }, 180_000);
});
