// Add-only firewall changes become inserts at the right positions; anything else is refused so
// that the caller rewrites the table.

import { describe, expect, it } from 'vitest';
import { insertOnlyBlock } from '../../kernel/firewall/incremental.js';
import { renderRules, tableBlocks, type FirewallNetwork } from '../../kernel/firewall/iptables.js';

const block = (chains: Record<string, string[]>, table = 'filter'): string =>
  `${[`*${table}`, ...Object.keys(chains).map((c) => `:${c} - [0:0]`), ...Object.entries(chains).flatMap(([c, rs]) => rs.map((r) => `-A ${c} ${r}`)), 'COMMIT'].join('\n')}\n`;

/** What a chain holds after applying an insert block to `before` (positions honoured). */
function replay(before: string[], ins: string, chain: string): string[] {
  const out = [...before];
  for (const l of ins.split('\n')) {
    const m = new RegExp(`^-I ${chain} (\\d+) (.*)$`).exec(l);
    if (m) out.splice(Number(m[1]) - 1, 0, m[2]!);
  }
  return out;
}

const net = (i: number, o: Partial<FirewallNetwork> = {}): FirewallNetwork => ({
  bridge: `tsb-${i}`, subnets4: [`10.9.${i}.0/24`], subnets6: [], internal: false, icc: true, masquerade: true, ports: [], resolvers: [`10.9.${i}.1`], ...o,
});

describe('insertOnlyBlock', () => {
  it('places new rules at their final positions, top, middle and end', () => {
    const before = block({ C: ['a', 'c', 'e'] });
    const after = block({ C: ['x', 'a', 'b', 'c', 'e', 'z'] });
    const ins = insertOnlyBlock(before, after)!;
    expect(ins).toBe('*filter\n-I C 1 x\n-I C 3 b\n-I C 6 z\nCOMMIT\n');
    expect(replay(['a', 'c', 'e'], ins, 'C')).toEqual(['x', 'a', 'b', 'c', 'e', 'z']);
  });

  it('handles repeated rules', () => {
    const ins = insertOnlyBlock(block({ C: ['a', 'b'] }), block({ C: ['a', 'a', 'b', 'a'] }))!;
    expect(replay(['a', 'b'], ins, 'C')).toEqual(['a', 'a', 'b', 'a']);
  });

  it('refuses deletions, reorderings, chain changes and another table', () => {
    expect(insertOnlyBlock(block({ C: ['a', 'b'] }), block({ C: ['a'] }))).toBeUndefined();
    expect(insertOnlyBlock(block({ C: ['a', 'b'] }), block({ C: ['b', 'a'] }))).toBeUndefined();
    expect(insertOnlyBlock(block({ C: ['a'] }), block({ C: ['a'], D: [] }))).toBeUndefined();
    expect(insertOnlyBlock(block({ C: ['a'] }), block({ C: ['a', 'b'] }, 'nat'))).toBeUndefined();
  });

  it('a network added to the real render is inserts in every table; one removed is not', () => {
    const one = tableBlocks(renderRules([net(1)]));
    const two = tableBlocks(renderRules([net(1), net(2, { ports: [{ proto: 'tcp', family: 4, hostIp: '0.0.0.0', hostPort: 8080, hostPortEnd: 8080, containerIp: '10.9.2.5', containerPort: 80 }] })]));
    for (const table of ['filter', 'nat', 'raw']) {
      const ins = insertOnlyBlock(one.get(table)!, two.get(table)!);
      expect(ins, table).toBeDefined();
      expect(ins).not.toMatch(/^:/m); // no chain declaration: nothing is flushed
      for (const chain of new Set([...two.get(table)!.matchAll(/^-A (\S+) /gm)].map((m) => m[1]!))) {
        const rules = (t: string): string[] => [...t.matchAll(new RegExp(`^-A ${chain} (.*)$`, 'gm'))].map((m) => m[1]!);
        expect(replay(rules(one.get(table)!), ins!, chain), `${table} ${chain}`).toEqual(rules(two.get(table)!));
      }
    }
    expect(insertOnlyBlock(two.get('filter')!, one.get('filter')!)).toBeUndefined();
  });
});
