// Locked-down interfaces: sockets and state only for root, a container reaches nothing of the
// daemon but its own network's resolver, the resolver is no open resolver for the outside, huge
// bodies are refused clearly, and product code never runs a shell.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterLab, type LabHost } from '../../bench/cluster-lab.js';
import { ROOT } from '../../bench/lab.js';
import { isRoot, ok, run } from '../helpers/sys.js';

const P = 'tsnt';
const canRun = isRoot && ok('which', ['etcd']);
const DNS_QUERY = join(ROOT, 'test/fixtures/dns-query.mjs');

const confA = { cniVersion: '1.1.0', name: 'seca', type: 'tsbridge', bridge: `${P}sa0`, isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'tsipam', subnet: '10.96.6.0/24' } };
const confB = { cniVersion: '1.1.0', name: 'secb', type: 'tsbridge', bridge: `${P}sb0`, isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'tsipam', subnet: '10.96.7.0/24' } };

/** A DNS query from a namespace: the rcode (NOERROR, REFUSED, …) or 'timeout'. */
function dig(ns: string, server: string, name: string, tcp = false): string {
  return run('ip', ['netns', 'exec', ns, process.execPath, DNS_QUERY, server, name, ...(tcp ? ['tcp'] : [])], { allowFail: true }).trim();
}

/** TCP connect from a namespace with a 1 s limit: true when something accepted. */
function connects(ns: string, ip: string, port: number): boolean {
  const script = `const s=require('net').connect(${port},'${ip}');s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),1000)`;
  return ok('ip', ['netns', 'exec', ns, process.execPath, '-e', script]);
}

const mode = (path: string): number => statSync(path).mode & 0o777;

describe.skipIf(!canRun)('locked-down interfaces', () => {
  const lab = new ClusterLab({ prefix: P, net: 217, etcdPort: 23740 });
  let h: LabHost;
  let gwA = '';
  let gwB = '';
  let b1 = '';

  beforeAll(async () => {
    await lab.up(1);
    h = lab.host(1);
    const a = lab.cni(h, 'ADD', { ...confA, args: { cni: { aliases: ['web'] } } }, `${P}sa1`, 'K8S_POD_NAME=alpha');
    const b = lab.cni(h, 'ADD', confB, `${P}sb1`, 'K8S_POD_NAME=beta');
    expect(a.code, JSON.stringify(a.out)).toBe(0);
    expect(b.code, JSON.stringify(b.out)).toBe(0);
    gwA = a.out.ips[0].gateway;
    gwB = b.out.ips[0].gateway;
    b1 = b.out.ips[0].address.split('/')[0];
  }, 120_000);
  afterAll(() => lab.down());

  it('plugin and CNI sockets are root-owned and 0660 or tighter; state files 0600', () => {
    const socks = readdirSync(h.pluginDir).filter((f) => f.endsWith('.sock')).map((f) => join(h.pluginDir, f));
    expect(socks.length).toBeGreaterThanOrEqual(6);
    for (const s of [...socks, h.cniSocket]) {
      expect(statSync(s).uid, s).toBe(0);
      expect(mode(s) & ~0o660, `${s} mode ${mode(s).toString(8)}`).toBe(0);
    }
    const files = readdirSync(h.stateDir).map((f) => join(h.stateDir, f)).filter((f) => statSync(f).isFile());
    expect(files.some((f) => f.endsWith('tsnet.db'))).toBe(true);
    for (const f of files) expect(mode(f), `${f} mode ${mode(f).toString(8)}`).toBe(0o600);
  });

  it('a container reaches its own network’s resolver and nothing else of the daemon', () => {
    expect(dig(`${P}sa1`, gwA, 'alpha')).toBe('NOERROR');
    expect(dig(`${P}sa1`, gwA, 'alpha', true)).toBe('NOERROR');
    // The other network's resolver (UDP and TCP) and its container: nothing.
    expect(dig(`${P}sa1`, gwB, 'beta')).toMatch(/REFUSED|timeout/);
    expect(dig(`${P}sa1`, gwB, 'beta', true)).toMatch(/REFUSED|timeout/);
    expect(ok('ip', ['netns', 'exec', `${P}sa1`, 'ping', '-c', '1', '-W', '1', b1])).toBe(false);
    // Every TCP port the daemon listens on, at every address of the host: only network A's
    // resolver accepts a connection from A's container.
    const pid = String(h.pid);
    const listening = run('ip', ['netns', 'exec', h.ns, 'ss', '-Hltnp']).split('\n').filter((l) => l.includes(`pid=${pid},`));
    expect(listening.length).toBeGreaterThan(0);
    const ports = [...new Set(listening.map((l) => Number(l.trim().split(/\s+/)[3]!.split(':').pop())))];
    const addresses = run('ip', ['-n', h.ns, '-4', '-o', 'addr', 'show']).split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/)[3]!.split('/')[0]!);
    for (const ip of addresses) {
      for (const port of ports) {
        const allowed = ip === gwA && port === 53;
        expect(connects(`${P}sa1`, ip, port), `${ip}:${port}`).toBe(allowed);
      }
    }
  });

  it('the resolver is no open resolver: a client outside the network is refused or ignored, never forwarded for', () => {
    const out = lab.outside();
    // The outside host gets a route to the container subnet through the host, so its queries arrive.
    run('ip', ['-n', out.ns, 'route', 'replace', '10.96.6.0/24', 'via', h.ip]);
    expect(ok('ip', ['netns', 'exec', out.ns, 'ping', '-c', '1', '-W', '1', gwA])).toBe(true);
    expect(dig(out.ns, gwA, 'alpha')).toMatch(/REFUSED|timeout/);
    expect(dig(out.ns, gwA, 'example.com')).toMatch(/REFUSED|timeout/);
    expect(dig(out.ns, gwA, 'alpha', true)).toMatch(/REFUSED|timeout/);
  });

  it('a 10 MB body gets a clear {"Err"} and the daemon keeps answering', async () => {
    const post = (path: string, body: string): Promise<{ status: number; text: string }> => new Promise((resolve, reject) => {
      const req = request({ socketPath: join(h.pluginDir, 'tsbridge.sock'), path, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
    const big = JSON.stringify({ NetworkID: 'x'.repeat(10 << 20), Options: {} });
    const r = await post('/NetworkDriver.CreateNetwork', big).catch((e: Error) => ({ status: 0, text: e.message }));
    // Either the answer is a clear error, or the daemon cut the upload off (EPIPE/ECONNRESET).
    if (r.status) expect(JSON.parse(r.text).Err).toMatch(/too large|body/i);
    const ok2 = await post('/Plugin.Activate', '{}');
    expect(JSON.parse(ok2.text).Implements).toContain('NetworkDriver');
  });

  it('product code never runs a shell: child processes only through execFile/spawnSync with argument arrays', () => {
    const dirs = ['bin', 'cnm', 'cni', 'core', 'dns', 'drivers', 'ipam', 'kernel', 'store'];
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else if (e.name.endsWith('.ts')) files.push(join(d, e.name));
      }
    };
    for (const d of dirs) walk(join(ROOT, d));
    expect(files.length).toBeGreaterThan(40);
    for (const f of files) {
      const src = readFileSync(f, 'utf8');
      expect(src, f).not.toMatch(/shell:\s*true/);
      const imported = [...src.matchAll(/import \{([^}]*)\} from 'node:child_process'/g)].flatMap((m) => m[1]!.split(',').map((x) => x.trim()).filter(Boolean));
      for (const name of imported) expect(['execFile', 'execFileSync', 'spawn', 'spawnSync'], `${f} imports ${name}`).toContain(name);
      expect(src, f).not.toMatch(/import \* as \w+ from 'node:child_process'|require\(['"](node:)?child_process['"]\)/);
      expect(src, f).not.toMatch(/['"`](ip|bridge|brctl|nsenter)['"`]\s*,\s*\[/); // never exec iproute2
    }
  });
});
