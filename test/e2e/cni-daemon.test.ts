// The CNI fast path: installed plugins hand calls to the running daemon, with the same results
// as standalone, and names registered through CNI are served by the daemon's resolver.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startTsnet, type TsnetDaemon } from '../../bench/lab.js';
import { cleanNamespacesAfterEach, makeNs } from '../helpers/netns.js';
import { ipJson, isRoot, linkNames, ok, ping, run, uniqueName } from '../helpers/sys.js';

const hasCurl = isRoot && ok('which', ['curl']);

describe.skipIf(!hasCurl)('CNI plugins with the daemon running', () => {
  cleanNamespacesAfterEach();
  let daemon: TsnetDaemon;
  let binDir: string;
  const name = uniqueName('cf');
  const conf = {
    cniVersion: '1.1.0', name, type: 'tsbridge', bridge: `tsnt${name.slice(-6)}`, isGateway: true, isDefaultGateway: true, ipMasq: true,
    ipam: { type: 'tsipam', subnet: '10.247.1.0/24' },
  };
  const invoke = (command: string, env: Record<string, string>, stateDir = daemon.stateDir, c: object = conf) => {
    const r = spawnSync(join(binDir, 'tsbridge'), [], {
      input: JSON.stringify(c), encoding: 'utf8',
      env: { PATH: process.env.PATH, TSNET_STATE_DIR: stateDir, CNI_COMMAND: command, CNI_PATH: binDir, ...env },
    });
    return { code: r.status, out: r.stdout ? JSON.parse(r.stdout) : undefined, raw: r.stdout + r.stderr };
  };
  const daemonLog = (): string => run('cat', [join(daemon.stateDir, 'daemon.log')]);

  beforeAll(async () => {
    daemon = await startTsnet();
    binDir = mkdtempSync(join(tmpdir(), 'tsnt-cnibin-'));
    run(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), 'cni', 'install', '--bin-dir', binDir]);
  }, 60_000);
  afterAll(async () => {
    await daemon?.stop();
    rmSync(binDir, { recursive: true, force: true });
  });

  it('ADD/DEL go through the daemon; the pod name resolves at the gateway; errors come back as CNI errors', () => {
    const a = makeNs('fa');
    const b = makeNs('fb');
    try {
    const served = (): number => daemonLog().split('\n').filter((l) => l.includes('"msg":"cni call"')).length;
    const before = served();
    const ra = invoke('ADD', { CNI_CONTAINERID: 'fast-a', CNI_NETNS: a.path, CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web-0' });
    const rb = invoke('ADD', { CNI_CONTAINERID: 'fast-b', CNI_NETNS: b.path, CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=db-0' });
    expect(ra.code, ra.raw).toBe(0);
    expect(rb.code, rb.raw).toBe(0);
    expect(served()).toBe(before + 2); // both served by the daemon, not standalone
    expect(ra.out).toMatchObject({ cniVersion: '1.1.0', ips: [{ address: '10.247.1.2/24', gateway: '10.247.1.1', interface: 2 }], dns: { nameservers: ['10.247.1.1'], search: ['tsnet.internal'] } });
    expect(ping(a.name, rb.out.ips[0].address.split('/')[0])).toBe(true);
    const lookup = run('ip', ['netns', 'exec', a.name, 'busybox', 'nslookup', 'db-0', '10.247.1.1'], { allowFail: true });
    expect(lookup).toMatch(/Address: 10\.247\.1\.3/);

    const err = invoke('ADD', { CNI_CONTAINERID: 'fast-a', CNI_NETNS: a.path, CNI_IFNAME: 'eth0' });
    expect(err.code).toBe(1);
    expect(err.out).toMatchObject({ code: 7, msg: expect.stringMatching(/already has eth0/) });

    } finally {
      for (const [ns, id] of [[a, 'fast-a'], [b, 'fast-b']] as const) expect(invoke('DEL', { CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }).code).toBe(0);
    }
    expect(linkNames()).not.toContain(conf.bridge);
  });

  it('DEL through the daemon takes eth0 out of the container at once, a re-ADD reuses the name, and the pair goes in the next batch', async () => {
    const ns = makeNs('fd');
    const env = { CNI_CONTAINERID: 'fast-d', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' };
    const keep = makeNs('fk'); // keeps the network alive between the two attachments
    const keepEnv = { CNI_CONTAINERID: 'fast-k', CNI_NETNS: keep.path, CNI_IFNAME: 'eth0' };
    expect(invoke('ADD', keepEnv).code).toBe(0);
    try {
      const first = invoke('ADD', env);
      expect(first.code, first.raw).toBe(0);
      const hostEnds = (): string[] => linkNames().filter((l) => l.startsWith('tsv'));
      const before = hostEnds();
      expect(invoke('DEL', env).code).toBe(0);
      // Gone from the container's view under its name; what may remain for a moment is down.
      const left = ipJson<any[]>(ns.name, 'link', 'show').filter((l) => l.ifname !== 'lo');
      expect(left.map((l) => l.ifname)).not.toContain('eth0');
      for (const l of left) {
        expect(l.ifname).toMatch(/^tsx/);
        expect(l.flags).not.toContain('UP');
      }
      // The same attachment again, at once, in the same namespace.
      const again = invoke('ADD', env);
      expect(again.code, again.raw).toBe(0);
      expect(ping(ns.name, '10.247.1.1')).toBe(true);
      expect(invoke('DEL', env).code).toBe(0);
      // Both detached pairs are deleted by the daemon's reaper: the container keeps no tsx link and
      // the host only the other attachment's end.
      const end = Date.now() + 3000;
      while (Date.now() < end && (linkNames(ns.name).some((l) => l.startsWith('tsx')) || hostEnds().length > before.length - 1)) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(linkNames(ns.name).filter((l) => l !== 'lo')).toEqual([]);
      expect(hostEnds().length).toBe(before.length - 1);
    } finally {
      expect(invoke('DEL', keepEnv).code).toBe(0);
    }
  });

  it('another state directory beside the daemon is refused (its chains would be overwritten); the same one may run standalone', () => {
    const other = mkdtempSync(join(tmpdir(), 'tsnt-other-'));
    const otherConf = { ...conf, bridge: `${conf.bridge.slice(0, 12)}o`, ipam: { type: 'tsipam', subnet: '10.247.2.0/24' } };
    const ns = makeNs('fo');
    try {
      const natBefore = run('iptables', ['-t', 'nat', '-S']);
      for (const command of ['ADD', 'DEL']) {
        const r = invoke(command, { CNI_CONTAINERID: 'other', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }, other, otherConf);
        expect(r.code).toBe(1);
        expect(r.out).toMatchObject({ code: 4, msg: expect.stringContaining(`a tsnet daemon (pid ${daemon.proc.pid}, state ${daemon.stateDir}) runs in this network namespace`) });
      }
      expect(run('sh', ['-c', `ls -A ${other}`])).toBe('');
      expect(linkNames()).not.toContain(otherConf.bridge);
      expect(run('iptables', ['-t', 'nat', '-S'])).toBe(natBefore);
      // The daemon's own store, with its CNI socket out of reach: standalone, and allowed.
      const env = { CNI_CONTAINERID: 'same', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', TSNET_CNI_SOCKET: '/nonexistent' };
      const same = invoke('ADD', env);
      expect(same.code, same.raw).toBe(0);
      expect(invoke('DEL', env).code).toBe(0);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
