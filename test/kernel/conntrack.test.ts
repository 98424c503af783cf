// Conntrack flushing over ctnetlink, in a throwaway namespace: the flows to a removed mapping's
// host ports go, all others stay. Checked with the conntrack tool, which tsnet no longer runs.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ConntrackMatch } from '../../kernel/firewall/conntrack.js';
import { cleanNamespacesAfterEach, makeNs, type TestNs } from '../helpers/netns.js';
import { isRoot, ok, run } from '../helpers/sys.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const canRun = isRoot && ok('which', ['conntrack']) && ok('which', ['nsenter']);

function inNs(ns: TestNs, fixture: string, args: string[], input = ''): string {
  const r = spawnSync('nsenter', [`--net=${ns.path}`, process.execPath, join(ROOT, 'test/fixtures', fixture), ...args], { input, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${fixture} failed: ${r.stderr}`);
  return r.stdout;
}

/** "proto/family dport" of every entry in the namespace's table, as the conntrack tool lists it. */
function table(ns: TestNs): string[] {
  const out: string[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const text = run('ip', ['netns', 'exec', ns.name, 'conntrack', '-L', '-f', family], { allowFail: true });
    for (const line of text.split('\n')) {
      const m = /^(\w+)\s+\d+\s.*?dport=(\d+)/.exec(line);
      if (m) out.push(`${m[1]}/${family === 'ipv4' ? 4 : 6} ${m[2]}`);
    }
  }
  return out.sort();
}

describe.skipIf(!canRun)('conntrack flush over ctnetlink', () => {
  cleanNamespacesAfterEach();

  it('deletes exactly the flows to the given host ports, per protocol and family; again finds nothing', () => {
    const ns = makeNs('ct');
    // A namespace tracks connections only once a rule needs it (as tsnet's NAT rules do).
    for (const tool of ['iptables', 'ip6tables']) run('ip', ['netns', 'exec', ns.name, tool, '-A', 'OUTPUT', '-m', 'conntrack', '--ctstate', 'NEW']);
    inNs(ns, 'conntrack-traffic.mjs', [JSON.stringify({ udp4: [31001, 31001, 31002, 31003, 31010], udp6: [31001, 31010], tcp4: [31001, 31004] })]);
    const before = table(ns);
    expect(before).toEqual(['tcp/4 31001', 'tcp/4 31004', 'udp/4 31001', 'udp/4 31001', 'udp/4 31002', 'udp/4 31003', 'udp/4 31010', 'udp/6 31001', 'udp/6 31010']);

    const matches: ConntrackMatch[] = [
      { proto: 'udp', family: 4, hostPort: 31001, hostPortEnd: 31002 },
      { proto: 'udp', family: 6, hostPort: 31001, hostPortEnd: 31001 },
      { proto: 'tcp', family: 4, hostPort: 31004, hostPortEnd: 31004 },
    ];
    const flush = (): number => JSON.parse(inNs(ns, 'conntrack-flush.mjs', [], JSON.stringify({ matches }))).deleted;
    expect(flush()).toBe(5);
    // TCP to 31001 is another protocol, 31003 and 31010 other ports: all stay.
    expect(table(ns)).toEqual(['tcp/4 31001', 'udp/4 31003', 'udp/4 31010', 'udp/6 31010']);
    expect(flush()).toBe(0);
  });
});
