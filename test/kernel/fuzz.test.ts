// Property-based fuzzing (fast-check, time-bounded) of what comes from outside: every Docker
// protocol endpoint (recorded Docker bodies, mutated), CNI stdin and environment, driver options
// and DNS packets. Never a crash, always a clear error, and no partial state: whatever a failed
// call touched is gone, which is checked by removing every recorded network afterwards and
// finding the kernel namespace and the store empty.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import fc from 'fast-check';
import * as dnsPacket from 'dns-packet';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPluginApp } from '../../cnm/server.js';
import { NetworkService } from '../../core/network-service.js';
import { Ipam } from '../../ipam/ipam.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import { SqliteStore } from '../../store/sqlite-store.js';
import { runCni } from '../../cni/dispatch.js';
import { parseBridgeOptions } from '../../drivers/bridge/options.js';
import { parseOverlayOptions } from '../../drivers/overlay/options.js';
import { NetError } from '../../kernel/errors.js';
import { DnsServer } from '../../dns/server.js';
import { RecordBook } from '../../dns/records.js';
import { Forwarder } from '../../dns/forward.js';
import { makeNs, removeNs, type TestNs } from '../helpers/netns.js';
import { isRoot, run } from '../helpers/sys.js';
import { noFirewall, silentLog } from '../helpers/fakes.js';

/** Messages that betray a bug rather than report bad input. */
const BUG = /Cannot read propert|is not a function|is not iterable|Maximum call stack|undefined \(reading/;
const TIME = { interruptAfterTimeLimit: 25_000, numRuns: 1500 };

const transcript = (readFileSync(new URL('../fixtures/cnm-probe-transcript.jsonl', import.meta.url), 'utf8')
  .trim().split('\n').map((l) => JSON.parse(l)) as Array<{ url?: string; request?: unknown }>)
  .filter((r): r is { url: string; request: Record<string, unknown> } => !!r.url && typeof r.request === 'object' && r.request !== null);
const urls = [...new Set(transcript.map((r) => r.url))];

/** Hostile values: shell metacharacters, newlines, unicode, huge strings, wrong types. */
const weird = fc.oneof(
  fc.string(), fc.string({ unit: 'grapheme' }),
  fc.constantFrom('$(reboot)', '`id`', 'a;rm -rf /', 'x\ny', '../../etc/passwd', '\u0000', 'tsb-x\u202e', 'é'.repeat(20), '10.0.0.0/8', '::/0', '0.0.0.0/0', 'fe80::1%eth0', '255.255.255.255/32'),
  fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant('x'.repeat(1 << 20)),
  fc.array(fc.string(), { maxLength: 3 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
);

type Json = Record<string, unknown>;
function paths(o: unknown, prefix: string[] = [], out: string[][] = []): string[][] {
  if (o && typeof o === 'object') {
    for (const [k, v] of Object.entries(o as Json)) {
      out.push([...prefix, k]);
      paths(v, [...prefix, k], out);
    }
  }
  return out;
}
function mutate(base: Json, muts: Array<[number, unknown, boolean]>): Json {
  const copy = structuredClone(base);
  for (const [n, value, del] of muts) {
    const all = paths(copy);
    if (!all.length) break;
    const p = all[n % all.length]!;
    let o = copy as Json;
    for (const k of p.slice(0, -1)) o = o[k] as Json;
    if (del) delete o[p.at(-1)!];
    else o[p.at(-1)!] = value;
  }
  return copy;
}

const bodyFor = (url: string) => fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...transcript.filter((r) => r.url === url).map((r) => r.request)), fc.array(fc.tuple(fc.nat(), weird, fc.boolean()), { minLength: 1, maxLength: 3 })).map(([b, m]) => JSON.stringify(mutate(b, m))) },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.string() },
);

describe.skipIf(!isRoot)('fuzzing the ways in', () => {
  let ns: TestNs;
  let host: NetlinkHandle;
  let store: SqliteStore;
  let dir: string;
  let networks: NetworkService;
  let ipam: Ipam;
  let app: FastifyInstance;

  beforeAll(async () => {
    ns = makeNs('fz');
    host = await NetlinkHandle.open({ path: ns.path });
    dir = mkdtempSync(join(tmpdir(), 'tsnt-fuzz-'));
    store = new SqliteStore(join(dir, 'tsnet.db'));
    ipam = new Ipam(store);
    // The firewall is not under test here (and must not touch the host's iptables).
    networks = new NetworkService(store, { host, firewall: noFirewall as never, log: silentLog, owner: 'tsnet:fuzz00000000' });
    app = buildPluginApp({ name: 'tsbridge', implements: ['NetworkDriver', 'IpamDriver'] }, { pluginDir: '/nonexistent', logLevel: 'silent', networks, ipam });
  });

  afterAll(async () => {
    await app?.close();
    networks?.reserver.closeAll();
    await host?.close();
    await store?.close();
    if (ns) removeNs(ns);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('Docker protocol: every endpoint answers 200 or a clear {"Err"}, never crashes, and failed calls leave no state', async () => {
    let calls = 0;
    let errors = 0;
    const succeeded = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...urls).chain((url) => fc.tuple(fc.constant(url), bodyFor(url))), async ([url, payload]) => {
        calls++;
        const r = await app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/vnd.docker.plugins.v1.2+json' } });
        const body = JSON.parse(r.body) as { Err?: unknown };
        if (r.statusCode === 200) {
          succeeded.set(url, (succeeded.get(url) ?? 0) + 1);
          expect(body.Err ?? '').toBe('');
        } else {
          errors++;
          expect(r.statusCode).toBeGreaterThanOrEqual(400);
          expect(typeof body.Err).toBe('string');
          expect((body.Err as string).length).toBeGreaterThan(0);
          expect(body.Err).not.toMatch(BUG);
        }
      }),
      TIME,
    );
    expect(calls).toBeGreaterThan(50);
    expect(errors).toBeGreaterThan(0);
    // The mutations keep many bodies valid enough to reach the kernel, not only the parser.
    expect(succeeded.get('/NetworkDriver.CreateNetwork') ?? 0).toBeGreaterThan(0);
    console.log(`fuzz: ${calls} calls, ${errors} refused; succeeded: ${JSON.stringify(Object.fromEntries(succeeded))}`);
    expect((await app.inject({ method: 'POST', url: '/Plugin.Activate' })).statusCode).toBe(200);
    // Remove what succeeded; whatever remains in the kernel came from a call that failed half-way.
    for (const ep of await networks.listEndpoints()) await networks.deleteEndpoint(ep.networkId, ep.id);
    for (const n of await networks.listNetworks()) await networks.deleteNetwork(n.id);
    expect(await networks.listNetworks()).toEqual([]);
    const links = run('ip', ['-n', ns.name, '-o', 'link', 'show']).trim().split('\n').map((l) => l.split(': ')[1]!.split('@')[0]!);
    expect(links).toEqual(['lo']);
  }, 120_000);

  it('CNI: any stdin and environment gives exit 0, or 1 with a CNI error (numeric code, message)', async () => {
    const conf = { cniVersion: '1.1.0', name: 'fz', type: 'tsbridge', bridge: 'tsntfz0', isGateway: true, ipMasq: true, ipam: { type: 'tsipam', subnet: '10.95.0.0/24' } };
    const rt = { networks, ipam, host, stateDir: dir, dnsDomain: 'tsnet.internal', log: silentLog };
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          CNI_COMMAND: fc.oneof(fc.constantFrom('ADD', 'DEL', 'CHECK', 'GC', 'VERSION', 'STATUS'), fc.string()),
          CNI_CONTAINERID: fc.oneof(fc.constantFrom('c1', 'fuzz-a'), fc.string()),
          CNI_NETNS: fc.oneof(fc.constant('/run/netns/tsnt-no-such-ns'), fc.string()),
          CNI_IFNAME: fc.oneof(fc.constant('eth0'), fc.string()),
          CNI_ARGS: fc.oneof(fc.constant('IgnoreUnknown=1;K8S_POD_NAME=p'), fc.string()),
          CNI_PATH: fc.constant('/usr/lib/cni'),
        }, { requiredKeys: [] }),
        fc.oneof(fc.array(fc.tuple(fc.nat(), weird, fc.boolean()), { maxLength: 3 }).map((m) => JSON.stringify(mutate(conf, m))), fc.string()),
        fc.constantFrom('tsbridge', 'tsipam', 'tsmacvlan', 'tsoverlay') as fc.Arbitrary<'tsbridge' | 'tsipam' | 'tsmacvlan' | 'tsoverlay'>,
        async (env, stdin, type) => {
          let out = '';
          const code = await runCni(type, { env, stdin, out: (t) => (out += t) }, async () => rt);
          expect([0, 1]).toContain(code);
          if (code === 1) {
            const err = JSON.parse(out) as { code: unknown; msg: unknown };
            expect(typeof err.code).toBe('number');
            expect(typeof err.msg).toBe('string');
            expect(err.msg).not.toMatch(BUG);
          }
        },
      ),
      TIME,
    );
    const left = run('ip', ['-n', ns.name, '-o', 'link', 'show']);
    expect(left, left).not.toMatch(/tsntfz0|tsv/);
  }, 120_000);

  it('driver options: any map is accepted or refused with a NetError, never another exception', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('com.docker.network.bridge.name', 'com.docker.network.driver.mtu', 'vni', 'tsnet.cluster_network', 'com.docker.network.bridge.enable_icc', 'com.docker.network.container_iface_prefix')), weird as fc.Arbitrary<never>, { maxKeys: 4 }), (opts) => {
        for (const parse of [parseBridgeOptions, parseOverlayOptions]) {
          try {
            parse(opts as Record<string, string>);
          } catch (e) {
            expect(e).toBeInstanceOf(NetError);
            expect((e as Error).message).not.toMatch(BUG);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('DNS: random and truncated packets are dropped without harm; the server keeps answering', async () => {
    const records = new RecordBook();
    const forwarder = new Forwarder({ servers: ['127.0.0.1:9'] });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = new DnsServer({ records, forwarder, port });
    await server.addNetwork({ id: 'n1', listen: ['127.0.0.1'], subnets: ['127.0.0.0/8'], internal: false });
    records.setEndpoint('n1', 'e1', { names: ['web'], ipv4: '10.0.0.2' });
    const sock = createSocket('udp4');
    const valid = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web' }] });
    try {
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 600 }), fc.nat({ max: valid.length }).map((n) => valid.subarray(0, n)), fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
          const c = Buffer.from(valid);
          c[i] = b;
          return c;
        })), async (bytes) => {
          await new Promise<void>((r) => sock.send(bytes, port, '127.0.0.1', () => r()));
        }),
        { numRuns: 1000 },
      );
      const answer = await new Promise<Buffer>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no answer after the fuzzing')), 3000);
        sock.on('message', (m) => {
          const d = dnsPacket.decode(m);
          if (d.id === 99) {
            clearTimeout(t);
            resolve(m);
          }
        });
        // A flood of tiny packets can fill the socket's receive buffer (each costs ~1 KB of it), and
        // the kernel then drops what follows: ask the way a resolver does, again after a pause.
        const ask = (): void => sock.send(dnsPacket.encode({ type: 'query', id: 99, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web' }] }), port, '127.0.0.1');
        ask();
        const again = setInterval(ask, 500);
        t.unref();
        void new Promise((r) => setTimeout(r, 2900)).then(() => clearInterval(again));
      });
      expect((dnsPacket.decode(answer).answers![0] as { data: string }).data).toBe('10.0.0.2');
    } finally {
      sock.close();
      await server.close();
      forwarder.close();
    }
  }, 60_000);
});
