// The firewall in a throwaway namespace: networks and ports added one by one (sent as inserts)
// leave the kernel with exactly the rules, in exactly the order, of one full render of the end
// state; a removal goes back to a rewrite and is just as exact.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FirewallNetwork } from '../../kernel/firewall/iptables.js';
import { cleanNamespacesAfterEach, makeNs } from '../helpers/netns.js';
import { isRoot, ok } from '../helpers/sys.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURE = join(ROOT, 'test/fixtures/firewall-steps.mjs');
const canRun = isRoot && ok('which', ['iptables-restore']);

interface Outcome {
  sent: { rewrites: number; inserts: number };
  /** iptables-save runs of the firewall's applies. */
  saves: number;
  /** Drift checks answered from the nf_tables generation, without iptables-save. */
  driftSkips: number;
  /** What each drift step found. */
  drifts: string[][];
  rules: Record<'4' | '6', string[]>;
  /** Every rule of the built-in chains tsnet hooks into. */
  builtin: Record<'4' | '6', string[]>;
}

function applySteps(steps: Array<FirewallNetwork[] | { run: string[] } | { force: FirewallNetwork[] } | { drift: FirewallNetwork[] }>): Outcome {
  const ns = makeNs('fw');
  const r = spawnSync('nsenter', [`--net=${ns.path}`, process.execPath, FIXTURE], {
    input: JSON.stringify({ steps, extras: { resolverPort: 53 } }), encoding: 'utf8', timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`firewall fixture failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Outcome;
}

const net = (i: number, o: Partial<FirewallNetwork> = {}): FirewallNetwork => ({
  bridge: `tsb-${i}`, subnets4: [`10.9.${i}.0/24`], subnets6: [], internal: false, icc: true, masquerade: true, ports: [], resolvers: [`10.9.${i}.1`], ...o,
});
const port = (i: number, hostPort: number) => ({ proto: 'tcp' as const, family: 4 as const, hostIp: '0.0.0.0', hostPort, hostPortEnd: hostPort, containerIp: `10.9.${i}.5`, containerPort: 80 });
const port6 = (i: number, hostPort: number) => ({ proto: 'tcp' as const, family: 6 as const, hostIp: '::', hostPort, hostPortEnd: hostPort, containerIp: `fd09:${i}::5`, containerPort: 80 });

describe.skipIf(!canRun)('firewall: add-only changes as inserts', () => {
  cleanNamespacesAfterEach();

  it('networks, ports and a dual-stack network added one by one equal one render of the end state', () => {
    const dual = net(4, { subnets6: ['fd09:4::/64'], resolvers: ['10.9.4.1', 'fd09:4::1'] });
    const steps = [
      [net(1)],
      [net(1), net(2)],
      [net(1), net(2, { ports: [port(2, 8080)] })],
      [net(1), net(2, { ports: [port(2, 8080), port(2, 8081)] }), net(3, { internal: true, icc: false })],
      [net(1), net(2, { ports: [port(2, 8080), port(2, 8081)] }), net(3, { internal: true, icc: false }), dual],
      // The first IPv6 port brings the chain's ::1 guard with it, ahead of its DNAT rule.
      [net(1), net(2, { ports: [port(2, 8080), port(2, 8081)] }), net(3, { internal: true, icc: false }), { ...dual, ports: [port6(4, 8090)] }],
    ];
    const stepwise = applySteps(steps);
    const direct = applySteps([steps.at(-1)!]);
    expect(stepwise.rules['4'].length).toBeGreaterThan(20);
    expect(stepwise.rules).toEqual(direct.rules);
    const dnat6 = stepwise.rules['6'].filter((r) => r.startsWith('*nat -A TSNET-DNAT'));
    expect(dnat6).toEqual(['*nat -A TSNET-DNAT -d ::1/128 -j RETURN', expect.stringContaining('--dport 8090 -j DNAT --to-destination [fd09:4::5]:80')]);
    // The first render rewrites; every later table change only added rules.
    expect(stepwise.sent.inserts).toBeGreaterThanOrEqual(8);
    expect(stepwise.sent.rewrites).toBe(direct.sent.rewrites);
  });

  it('a network or a port removed is a rewrite, and exact', () => {
    const full = [net(1), net(2, { ports: [port(2, 8080)] })];
    const after = [net(2)];
    const stepwise = applySteps([full, after]);
    expect(stepwise.rules).toEqual(applySteps([after]).rules);
    expect(stepwise.sent.inserts).toBe(0);
  });

  it('when another writer moved the chains since the last apply, an add-only change is a rewrite', () => {
    const one = [net(1)];
    const two = [net(1), net(2)];
    // A stray rule in one of our chains: the counts no longer match what was last applied.
    const stray = { run: ['iptables', '-t', 'filter', '-I', 'TSNET-FORWARD', '1', '-i', 'stray0', '-j', 'ACCEPT'] };
    const stepwise = applySteps([one, stray, two]);
    expect(stepwise.rules).toEqual(applySteps([two]).rules);
    expect(stepwise.rules['4'].join('\n')).not.toContain('stray0');
    // Only ip6tables' filter table, which nobody touched, still went as inserts.
    expect(stepwise.sent.inserts).toBe(1);
  });

  it('after a render that left everything known, changes need no iptables-save until another writer commits', () => {
    const steps = [
      { force: [net(1)] },
      [net(1), net(2)],
      [net(1), net(2, { ports: [port(2, 8080)] })],
      [net(1), net(2, { ports: [port(2, 8080)] }), net(3, { subnets6: ['fd09:3::/64'], resolvers: ['10.9.3.1', 'fd09:3::1'] })],
    ];
    const quiet = applySteps(steps);
    expect(quiet.rules).toEqual(applySteps([steps.at(-1)!]).rules);
    // The forced render checks the jumps (one save per family); nothing after it reads back.
    expect(quiet.saves).toBe(2);
    expect(quiet.sent.inserts).toBeGreaterThanOrEqual(4);
    // Another writer in between: the next change reads the kernel again, and repairs what it finds.
    const stray = { run: ['iptables', '-t', 'filter', '-I', 'TSNET-FORWARD', '1', '-i', 'stray0', '-j', 'ACCEPT'] };
    const disturbed = applySteps([steps[0]!, steps[1]!, stray, steps[2]!, steps[3]!]);
    expect(disturbed.rules).toEqual(quiet.rules);
    expect(disturbed.rules['4'].join('\n')).not.toContain('stray0');
    expect(disturbed.saves).toBeGreaterThan(2);
  });

  it('the periodic drift check reads nothing back while nobody else commits, and still finds a stray rule', () => {
    const nets = [net(1), net(2, { ports: [port(2, 8080)] })];
    const check = { drift: nets };
    const stray = { run: ['iptables', '-t', 'filter', '-I', 'TSNET-FORWARD', '1', '-i', 'stray0', '-j', 'ACCEPT'] };
    // Another writer's commit that leaves our chains alone (a chain of its own).
    const other = { run: ['iptables', '-N', 'OTHER-TOOL'] };
    const r = applySteps([{ force: nets }, check, check, stray, check, { force: nets }, check, other, check, check]);
    expect(r.drifts[0]).toEqual([]);
    expect(r.drifts[1]).toEqual([]);
    expect(r.drifts[2]).toEqual(['iptables filter TSNET-FORWARD: 12 rules, want 11']);
    expect(r.drifts.slice(3)).toEqual([[], [], []]);
    // Skipped: the two after the first forced render, the one after the second, and the last one,
    // which follows a full check that found the kernel as rendered after the other writer's commit.
    expect(r.driftSkips).toBe(4);
  });

  it('built-in chains jump to ours once each, FORWARD right after DOCKER-USER; a lost or moved jump comes back, and only once', () => {
    const nets = [net(1)];
    // What Docker leaves in FORWARD: its DOCKER-USER jump first, a rule of its own after.
    const docker = [
      { run: ['iptables', '-N', 'DOCKER-USER'] },
      { run: ['iptables', '-A', 'FORWARD', '-j', 'DOCKER-USER'] },
      { run: ['iptables', '-A', 'FORWARD', '-o', 'docker9', '-j', 'ACCEPT'] },
    ];
    const jumps = (family: 4 | 6) => [
      ...(family === 4 ? ['*filter -A FORWARD -j DOCKER-USER'] : []),
      '*filter -A FORWARD -j TSNET-FORWARD',
      ...(family === 4 ? ['*filter -A FORWARD -o docker9 -j ACCEPT'] : []),
      '*nat -A PREROUTING -m addrtype --dst-type LOCAL -j TSNET-DNAT',
      '*nat -A OUTPUT -m addrtype --dst-type LOCAL -j TSNET-DNAT',
      '*nat -A POSTROUTING -j TSNET-POSTROUTING',
      '*raw -A PREROUTING -j TSNET-RAW',
      '*raw -A OUTPUT -j TSNET-RAW-OUTPUT',
    ];
    // Order matters within a chain (FORWARD); the save prints tables in an order of its own.
    const byTable = (lines: string[]) => [...lines].sort((a, b) => a.split(' ')[0]!.localeCompare(b.split(' ')[0]!));
    const first = applySteps([...docker, nets]);
    expect(byTable(first.builtin['4'])).toEqual(byTable(jumps(4)));
    expect(byTable(first.builtin['6'])).toEqual(byTable(jumps(6)));
    // Another writer drops the masquerade hook and moves our FORWARD jump to the end; the periodic
    // (forced) apply puts both back where they belong, and a second one adds nothing.
    const lost = [
      { run: ['iptables', '-t', 'nat', '-D', 'POSTROUTING', '-j', 'TSNET-POSTROUTING'] },
      { run: ['iptables', '-D', 'FORWARD', '-j', 'TSNET-FORWARD'] },
      { run: ['iptables', '-A', 'FORWARD', '-j', 'TSNET-FORWARD'] },
    ];
    const repaired = applySteps([...docker, nets, ...lost, { force: nets }, { force: nets }]);
    expect(byTable(repaired.builtin['4'])).toEqual(byTable(jumps(4)));
    expect(byTable(repaired.builtin['6'])).toEqual(byTable(jumps(6)));
  });
});
