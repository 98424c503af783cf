// The firewall is rendered from data; its text is checked line by line here (no root needed).

import { describe, expect, it } from 'vitest';
import { renderRules, tableBlocks, type FirewallNetwork } from '../../kernel/firewall/iptables.js';

const net = (o: Partial<FirewallNetwork>): FirewallNetwork => ({
  bridge: 'tsb-a', subnets4: ['10.1.0.0/24'], subnets6: ['fd00:1::/64'], internal: false, icc: true, masquerade: true, ports: [], ...o,
});

describe('iptables rendering', () => {
  it('declares (and so flushes) every tsnet chain even with no networks', () => {
    expect(renderRules([])).toBe([
      '*filter', ':TSNET-FORWARD - [0:0]', ':TSNET-ISOLATION-1 - [0:0]', ':TSNET-ISOLATION-2 - [0:0]',
      '-A TSNET-FORWARD -j TSNET-ISOLATION-1',
      '-A TSNET-ISOLATION-2 -o docker0 -j DROP', '-A TSNET-ISOLATION-2 -o br-+ -j DROP',
      'COMMIT', '*nat', ':TSNET-POSTROUTING - [0:0]', ':TSNET-DNAT - [0:0]', 'COMMIT', '*raw', ':TSNET-RAW - [0:0]', ':TSNET-RAW-OUTPUT - [0:0]', 'COMMIT', '',
    ].join('\n'));
  });

  it('a normal network: return traffic, intra-bridge, egress accepted; isolated; masqueraded', () => {
    const text = renderRules([net({})]);
    expect(text).toContain('-A TSNET-FORWARD -o tsb-a -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
    expect(text).toContain('-A TSNET-FORWARD -i tsb-a -o tsb-a -j ACCEPT');
    expect(text).toContain('-A TSNET-FORWARD -i tsb-a ! -o tsb-a -j ACCEPT');
    expect(text).toContain('-A TSNET-ISOLATION-1 -i tsb-a ! -o tsb-a -j TSNET-ISOLATION-2');
    expect(text).toContain('-A TSNET-ISOLATION-2 -o tsb-a -j DROP');
    expect(text).toContain('-A TSNET-POSTROUTING -s 10.1.0.0/24 ! -o tsb-a -j MASQUERADE');
    expect(renderRules([net({})], 6)).toContain('-A TSNET-POSTROUTING -s fd00:1::/64 ! -o tsb-a -j MASQUERADE');
    // A chosen IPv4 source (Docker's host_ipv4) is SNAT; IPv6 still masquerades.
    expect(renderRules([net({ snatSource4: '192.0.2.9' })], 4)).toContain('-A TSNET-POSTROUTING -s 10.1.0.0/24 ! -o tsb-a -j SNAT --to-source 192.0.2.9');
    expect(renderRules([net({ snatSource4: '192.0.2.9' })], 6)).toContain('-A TSNET-POSTROUTING -s fd00:1::/64 ! -o tsb-a -j MASQUERADE');
  });

  it('containers cannot reach the host’s loopback through the bridge', () => {
    expect(renderRules([net({})])).toContain('-A TSNET-RAW -i tsb-a -d 127.0.0.0/8 -j DROP');
    expect(renderRules([net({})], 6)).not.toContain('127.0.0.0/8');
  });

  it('traffic staying on an icc network is accepted by the first rule of the chain', () => {
    const lines = renderRules([net({ bridge: 'tsb-x' }), net({ bridge: 'tsb-y', icc: false })]).split('\n');
    expect(lines[4]).toBe('-A TSNET-FORWARD -i tsb-x -o tsb-x -j ACCEPT');
    expect(lines).not.toContain('-A TSNET-FORWARD -i tsb-y -o tsb-y -j ACCEPT');
  });

  it('the host VXLAN traffic skips conntrack, in both directions, for its own family only', () => {
    const extras = { untrackVxlan: { vtep: '192.0.2.10', port: 4789 } };
    const v4 = renderRules([], 4, extras);
    expect(v4).toContain('-A TSNET-RAW -d 192.0.2.10 -p udp -m udp --dport 4789 -j CT --notrack');
    expect(v4).toContain('-A TSNET-RAW-OUTPUT -s 192.0.2.10 -p udp -m udp --dport 4789 -j CT --notrack');
    expect(renderRules([], 6, extras)).not.toContain('notrack');
    expect(renderRules([], 4)).not.toContain('notrack');
  });

  it('a resolver is reachable from its own bridge and the host only: own bridge returns first, then every resolver drops', () => {
    const nets = [net({ bridge: 'tsb-a', resolvers: ['10.1.0.1', 'fd00:1::1'] }), net({ bridge: 'tsb-b', subnets4: ['10.2.0.0/24'], resolvers: ['10.2.0.1'] })];
    const raw = renderRules(nets, 4, { resolverPort: 53 }).split('\n').filter((l) => l.startsWith('-A TSNET-RAW ') && l.includes('--dport 53'));
    expect(raw).toEqual([
      '-A TSNET-RAW -i tsb-a -d 10.1.0.1 -p udp -m udp --dport 53 -j RETURN',
      '-A TSNET-RAW -i tsb-a -d 10.1.0.1 -p tcp -m tcp --dport 53 -j RETURN',
      '-A TSNET-RAW -i tsb-b -d 10.2.0.1 -p udp -m udp --dport 53 -j RETURN',
      '-A TSNET-RAW -i tsb-b -d 10.2.0.1 -p tcp -m tcp --dport 53 -j RETURN',
      '-A TSNET-RAW -d 10.1.0.1 ! -i lo -p udp -m udp --dport 53 -j DROP',
      '-A TSNET-RAW -d 10.1.0.1 ! -i lo -p tcp -m tcp --dport 53 -j DROP',
      '-A TSNET-RAW -d 10.2.0.1 ! -i lo -p udp -m udp --dport 53 -j DROP',
      '-A TSNET-RAW -d 10.2.0.1 ! -i lo -p tcp -m tcp --dport 53 -j DROP',
    ]);
    expect(renderRules(nets, 6, { resolverPort: 53 })).toContain('-A TSNET-RAW -d fd00:1::1 ! -i lo -p udp -m udp --dport 53 -j DROP');
    expect(renderRules(nets, 4)).not.toContain('--dport 53'); // no resolvers in this process: no rules
  });

  it('splits a render into its tables, each a complete restore block, together the whole text', () => {
    const text = renderRules([net({ resolvers: ['10.1.0.1'] })], 4, { resolverPort: 53 });
    const blocks = tableBlocks(text);
    expect([...blocks.keys()]).toEqual(['filter', 'nat', 'raw']);
    for (const [t, b] of blocks) expect(b).toMatch(new RegExp(`^\\*${t}\\n[\\s\\S]*\\nCOMMIT\\n$`));
    expect([...blocks.values()].join('')).toBe(text);
  });

  it('an IPv4-only network with IPv6 off on its bridge is left out of the ip6tables render entirely', () => {
    const nets = [net({ bridge: 'tsb-v4', subnets6: [], ipv6Disabled: true }), net({ bridge: 'tsb-ds' })];
    expect(renderRules(nets, 4)).toContain('-i tsb-v4');
    const v6 = renderRules(nets, 6);
    expect(v6).not.toContain('tsb-v4');
    expect(v6).toContain('-i tsb-ds');
  });

  it('icc off drops traffic between containers of the bridge', () => {
    expect(renderRules([net({ icc: false })])).toContain('-A TSNET-FORWARD -i tsb-a -o tsb-a -j DROP');
  });

  it('internal: nothing leaves or enters the subnet, no egress accept, no NAT', () => {
    const text = renderRules([net({ internal: true })]);
    expect(text).toContain('-A TSNET-ISOLATION-1 -i tsb-a ! -d 10.1.0.0/24 -j DROP');
    expect(text).toContain('-A TSNET-ISOLATION-1 -o tsb-a ! -s 10.1.0.0/24 -j DROP');
    expect(text).not.toContain('-i tsb-a ! -o tsb-a -j ACCEPT');
    expect(text).not.toContain('MASQUERADE');
  });

  it('masquerade off renders no NAT for the network', () => {
    expect(renderRules([net({ masquerade: false })])).not.toContain('MASQUERADE');
  });
});

describe('published ports', () => {
  const port = (o: object) => ({ proto: 'tcp' as const, family: 4 as const, hostIp: '0.0.0.0', hostPort: 8080, hostPortEnd: 8080, containerIp: '10.1.0.2', containerPort: 80, ...o });

  it('one DNAT rule per mapping; a range is one rule; shifted ranges map 1:1', () => {
    const text = renderRules([net({ ports: [
      port({}),
      port({ proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353, containerPort: 53 }),
      port({ hostPort: 9000, hostPortEnd: 9010, containerPort: 9000 }),
      port({ hostPort: 7000, hostPortEnd: 7010, containerPort: 8000 }),
    ] })]);
    expect(text).toContain('-A TSNET-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80');
    expect(text).toContain('-A TSNET-DNAT -d 127.0.0.1 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.1.0.2:53');
    expect(text).toContain('-A TSNET-DNAT -p tcp -m tcp --dport 9000:9010 -j DNAT --to-destination 10.1.0.2');
    expect(text).toContain('-A TSNET-DNAT -p tcp -m tcp --dport 7000:7010 -j DNAT --to-destination 10.1.0.2:8000-8010/7000');
    expect(text.split('\n').filter((l) => l.startsWith('-A TSNET-DNAT'))).toHaveLength(4);
    // 127.0.0.1 ports cannot be reached with a crafted destination from outside.
    expect(text).toContain('-A TSNET-RAW -d 127.0.0.1 ! -i lo -p udp -m udp --dport 5353 -j DROP');
    // Hairpin and host-originated connections are masqueraded; external ones are not.
    expect(text).toContain('-A TSNET-POSTROUTING -s 10.1.0.0/24 -o tsb-a -m conntrack --ctstate DNAT -j MASQUERADE');
    expect(text).toContain('-A TSNET-POSTROUTING -o tsb-a -m addrtype --src-type LOCAL -m conntrack --ctstate DNAT -j MASQUERADE');
    expect(text).toContain('-A TSNET-FORWARD -o tsb-a -m conntrack --ctstate DNAT -j ACCEPT');
  });

  it('SCTP mappings use the sctp match (the kernel here has SCTP conntrack but no SCTP sockets to test with)', () => {
    expect(renderRules([net({ ports: [port({ proto: 'sctp', hostPort: 9999, hostPortEnd: 9999, containerPort: 99 })] })]))
      .toContain('-A TSNET-DNAT -p sctp -m sctp --dport 9999 -j DNAT --to-destination 10.1.0.2:99');
  });

  it('IPv6 mappings render only in the ip6tables batch, with bracketed addresses', () => {
    const nets = [net({ ports: [port({ family: 6, hostIp: '::', containerIp: 'fd00:1::2' })] })];
    expect(renderRules(nets, 6)).toContain('-A TSNET-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:1::2]:80');
    expect(renderRules(nets, 4)).not.toContain('--dport 8080');
  });
});
