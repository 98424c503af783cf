// The firewall is rendered from data; its text is checked line by line here (no root needed).

import { describe, expect, it } from 'vitest';
import { renderRules, type FirewallNetwork } from '../../kernel/firewall/iptables.js';

const net = (o: Partial<FirewallNetwork>): FirewallNetwork => ({
  bridge: 'tsb-a', subnets4: ['10.1.0.0/24'], subnets6: ['fd00:1::/64'], internal: false, icc: true, masquerade: true, ...o,
});

describe('iptables rendering', () => {
  it('declares (and so flushes) every tsnet chain even with no networks', () => {
    expect(renderRules([])).toBe([
      '*filter', ':TSNET-FORWARD - [0:0]', ':TSNET-ISOLATION-1 - [0:0]', ':TSNET-ISOLATION-2 - [0:0]',
      '-A TSNET-FORWARD -j TSNET-ISOLATION-1',
      '-A TSNET-ISOLATION-2 -o docker0 -j DROP', '-A TSNET-ISOLATION-2 -o br-+ -j DROP',
      'COMMIT', '*nat', ':TSNET-POSTROUTING - [0:0]', 'COMMIT', '',
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
