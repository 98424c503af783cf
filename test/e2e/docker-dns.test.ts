// The embedded resolver with a real dockerd: names learnt from the Docker API, scoped per
// network, forwarding to an upstream (dnsmasq in a test namespace), and a restart.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../bench/lab.js';
import { docker, DockerScene, ensureDocker, IMAGE, startTsnet, type TsnetDaemon } from '../helpers/docker.js';
import { eventually, ip, isRoot, ok, run, uniqueName } from '../helpers/sys.js';

const hasDocker = isRoot && ok('which', ['dockerd']) && ok('which', ['dnsmasq']);
const UPSTREAM = '198.18.233.2';

describe.skipIf(!hasDocker)('embedded DNS on tsbridge networks (real dockerd)', () => {
  let daemon: TsnetDaemon;
  const scene = new DockerScene();
  const net = (args: string[]): string => scene.net(args);
  const ctr = (netName: string, ...extra: string[]): string => scene.ctr(netName, ...extra);
  const outside = uniqueName('dns');
  let dnsmasqPid = '';
  const ipOf = (c: string): string => docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c);
  /** nslookup against an explicit server: the addresses it printed for the name, or the error. */
  const lookup = (c: string, name: string, server: string, type = ''): string =>
    run('docker', ['exec', c, 'nslookup', ...(type ? [`-type=${type}`] : []), name, server], { allowFail: true })
      + run('sh', ['-c', `docker exec ${c} nslookup ${type ? `-type=${type} ` : ''}${name} ${server} 2>&1 >/dev/null || true`]);
  const addresses = (out: string): string[] =>
    [...out.split('Name:').slice(1).join('\n').matchAll(/Address:\s*(\S+)/g)].map((m) => m[1]!).filter((a) => !a.includes('#') && !a.endsWith(':53'));

  beforeAll(async () => {
    await ensureDocker();
    // An upstream resolver on an "outside" host, routed via the host.
    run('ip', ['netns', 'add', outside]);
    run('ip', ['link', 'add', `${outside}h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside]);
    run('ip', ['addr', 'add', '198.18.233.1/30', 'dev', `${outside}h`]);
    run('ip', ['link', 'set', `${outside}h`, 'up']);
    ip(outside, 'addr', 'add', `${UPSTREAM}/30`, 'dev', 'eth0');
    ip(outside, 'link', 'set', 'eth0', 'up');
    ip(outside, 'link', 'set', 'lo', 'up');
    dnsmasqPid = run('sh', ['-c', `ip netns exec ${outside} dnsmasq --no-resolv --no-hosts --keep-in-foreground --listen-address=${UPSTREAM} --bind-interfaces --address=/upstream.test/203.0.113.7 --pid-file= >/dev/null 2>&1 & echo $!`]).trim();
    daemon = await startTsnet(undefined, ['--dns-upstream', UPSTREAM]);
  }, 180_000);

  afterAll(async () => {
    scene.cleanup();
    if (dnsmasqPid) run('kill', [dnsmasqPid], { allowFail: true });
    run('ip', ['link', 'del', `${outside}h`], { allowFail: true });
    run('ip', ['netns', 'del', outside], { allowFail: true });
    await daemon?.stop();
  }, 120_000);

  it('names, aliases (round-robin over a shared one) and PTR; other networks see none of it; upstream names forwarded; internal does not forward; a restart answers the same', async () => {
    const n1 = net(['--ipam-driver', 'tsipam', '--subnet', '10.233.10.0/24']);
    const gw = '10.233.10.1';
    const a = ctr(n1, '--network-alias', 'svc');
    const b = ctr(n1, '--network-alias', 'svc', '--network-alias', 'bee');
    const [aIp, bIp] = [ipOf(a), ipOf(b)];

    expect(await eventually(() => addresses(lookup(a, b, gw)).includes(bIp))).toBe(true);
    expect(addresses(lookup(a, `${b.toUpperCase()}.tsnet.internal`, gw))).toEqual([bIp]);
    expect(addresses(lookup(b, 'bee', gw))).toEqual([bIp]);
    expect(addresses(lookup(a, 'svc', gw)).sort()).toEqual([aIp, bIp].sort());
    expect(lookup(a, bIp, gw)).toContain(`name = ${b}.tsnet.internal`);
    expect(lookup(a, 'nobody.tsnet.internal', gw)).toMatch(/NXDOMAIN/);

    // Another network: its own resolver does not know n1's names, and n1's refuses it.
    const n2 = net(['--ipam-driver', 'tsipam', '--subnet', '10.233.11.0/24']);
    const other = ctr(n2);
    expect(addresses(lookup(other, `${b}.tsnet.internal`, '10.233.11.1'))).toEqual([]);
    // Refused by the resolver, or (since the firewall drops DNS from other networks) not reached.
    expect(lookup(other, b, gw)).toMatch(/REFUSED|can't find|refused|timed out/i);

    // Names we do not know go to the upstream; internal networks do not forward.
    expect(addresses(lookup(a, 'upstream.test', gw))).toEqual(['203.0.113.7']);
    const internal = net(['--internal', '--ipam-driver', 'tsipam', '--subnet', '10.233.12.0/24']);
    const i1 = ctr(internal);
    const i2 = ctr(internal);
    expect(await eventually(() => addresses(lookup(i1, i2, '10.233.12.1')).length === 1)).toBe(true);
    expect(addresses(lookup(i1, 'upstream.test', '10.233.12.1'))).toEqual([]);

    // Docker's own resolver forwards to ours when the container is run with --dns <gateway>.
    const viaDocker = ctr(n1, '--dns', gw);
    expect(addresses(lookup(viaDocker, 'upstream.test', '127.0.0.11'))).toEqual(['203.0.113.7']);

    // A restarted daemon answers from its store at once (Docker is not asked again first).
    await daemon.stop('SIGKILL');
    daemon = await startTsnet(daemon.stateDir, daemon.extraArgs);
    expect(addresses(lookup(a, b, gw))).toEqual([bIp]);

    // A removed container's names vanish.
    docker('rm', '-f', b);
    // Docker's first calls after the plugin restart may wait out its reconnect backoff (up to ~15 s).
    expect(await eventually(() => addresses(lookup(a, 'svc', gw)).join() === aIp, 30_000)).toBe(true);
  }, 120_000);

  it('after dockerd restarts, restarted and new containers answer by name', async () => {
    // dockerd's exit resets the event stream without ending it: names were never learnt again.
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.233.14.0/24']);
    const gw = '10.233.14.1';
    const a = ctr(n, '--restart', 'always');
    const b = ctr(n, '--restart', 'always');
    expect(await eventually(() => addresses(lookup(a, b, gw)).includes(ipOf(b)))).toBe(true);

    run('pkill', ['-TERM', '-x', 'dockerd']);
    expect(await eventually(() => !ok('pgrep', ['-x', 'dockerd']), 30_000)).toBe(true);
    await ensureDocker();
    const running = (c: string): boolean => run('docker', ['inspect', '-f', '{{.State.Running}}', c], { allowFail: true }).trim() === 'true';
    expect(await eventually(() => running(a) && running(b), 30_000)).toBe(true);

    expect(await eventually(() => addresses(lookup(a, b, gw)).includes(ipOf(b)))).toBe(true);
    const c = ctr(n);
    expect(await eventually(() => addresses(lookup(a, c, gw)).includes(ipOf(c)))).toBe(true);
  }, 120_000);

  it('docker rename: the new name answers and the old one is gone, as with Docker’s resolver', async () => {
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.233.13.0/24']);
    const gw = '10.233.13.1';
    const a = ctr(n);
    const b = ctr(n);
    const bIp = ipOf(b);
    expect(await eventually(() => addresses(lookup(a, b, gw)).includes(bIp))).toBe(true);
    const renamed = uniqueName('ren');
    docker('rename', b, renamed);
    scene.track(renamed);
    // Nothing but the rename happens on the network: no connect or disconnect to learn it from.
    expect(await eventually(() => addresses(lookup(a, renamed, gw)).includes(bIp))).toBe(true);
    expect(addresses(lookup(a, b, gw))).toEqual([]);
    expect(lookup(a, `${b}.tsnet.internal`, gw)).toMatch(/NXDOMAIN/);
  });
  it('40 containers started at once all answer under their shared alias; a UDP-only client (busybox) gets the 30 that fit', async () => {
    const n = net(['--ipam-driver', 'tsipam', '--subnet', '10.233.15.0/24']);
    const names = Array.from({ length: 40 }, () => uniqueName('rr'));
    scene.ctrs.push(...names);
    const started = names.map((name) => new Promise<number | null>((resolve) => {
      spawn('docker', ['run', '-d', '--name', name, '--network', n, '--network-alias', 'crowd', IMAGE, 'sleep', '600'], { stdio: 'ignore' })
        .on('exit', resolve);
    }));
    expect(await Promise.all(started)).toEqual(names.map(() => 0));
    // Every endpoint learns the alias; an inspection read while a join was still under way
    // (Docker lists such an endpoint as "ep-<id>") must not leave one without it.
    const stored = (): Array<{ names: string[] }> => JSON.parse(run(process.execPath, [
      join(ROOT, 'dist/bin/tsnet.js'), '--state-dir', daemon.stateDir, '--api-socket', '/nonexistent', '--json', 'endpoint', 'ls',
    ])).filter((e: { network: string }) => e.network === docker('network', 'inspect', '-f', '{{.Id}}', n));
    const allNamed = (): boolean => stored().length === 40 && stored().every((e) => e.names.includes('crowd'));
    expect(await eventually(allNamed, 15_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 1500)); // a late, stale inspection would land here
    expect(allNamed()).toBe(true);
    // busybox's nslookup asks over UDP and never retries over TCP: it shows the records that fit
    // in 512 bytes (the reply says TC), where an empty truncated reply showed none.
    const got = addresses(lookup(names[0]!, 'crowd', '10.233.15.1'));
    expect(got).toHaveLength(30);
    expect(new Set(got).size).toBe(30);
    expect(got.every((a) => a.startsWith('10.233.15.'))).toBe(true);
  }, 120_000);
});

