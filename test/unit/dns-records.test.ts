import { describe, expect, it } from 'vitest';
import { RecordBook } from '../../dns/records.js';

describe('record book', () => {
  const book = (): RecordBook => {
    const b = new RecordBook('tsnet.internal');
    b.setEndpoint('n1', 'e1', { names: ['Web', 'svc'], ipv4: '10.0.0.2', ipv6: 'fd00::2' });
    b.setEndpoint('n1', 'e2', { names: ['db', 'svc'], ipv4: '10.0.0.3' });
    b.setEndpoint('n2', 'e3', { names: ['other'], ipv4: '10.1.0.2' });
    return b;
  };

  it('answers names case-insensitively, with or without trailing dot or domain', () => {
    const b = book();
    for (const q of ['web', 'WEB.', 'web.tsnet.internal', 'Web.TSNET.internal.']) {
      expect(b.lookup('n1', q, 'A')).toEqual({ kind: 'answer', addresses: ['10.0.0.2'] });
    }
    expect(b.lookup('n1', 'web', 'AAAA')).toEqual({ kind: 'answer', addresses: ['fd00::2'] });
  });

  it('a shared alias answers every address; a name with no address of the type is NODATA', () => {
    const b = book();
    const r = b.lookup('n1', 'svc', 'A');
    expect(r.kind === 'answer' && [...r.addresses].sort()).toEqual(['10.0.0.2', '10.0.0.3']);
    expect(b.lookup('n1', 'db', 'AAAA')).toEqual({ kind: 'nodata' });
    expect(b.lookup('n1', 'db', 'MX')).toEqual({ kind: 'nodata' });
  });

  it('is scoped per network; unknown names in our domain are NXDOMAIN, others go upstream', () => {
    const b = book();
    expect(b.lookup('n2', 'web', 'A')).toEqual({ kind: 'foreign' });
    expect(b.lookup('n2', 'web.tsnet.internal', 'A')).toEqual({ kind: 'nxdomain' });
    expect(b.lookup('n1', 'example.com', 'A')).toEqual({ kind: 'foreign' });
  });

  it('PTR for IPv4 and IPv6 gives the first name', () => {
    const b = book();
    expect(b.lookup('n1', '2.0.0.10.in-addr.arpa', 'PTR')).toEqual({ kind: 'ptr', names: ['web'] });
    const v6 = `2.${'0.'.repeat(29)}d.f.ip6.arpa`; // fd00::2, nibble by nibble, reversed
    expect(b.lookup('n1', v6, 'PTR')).toEqual({ kind: 'ptr', names: ['web'] });
    expect(b.lookup('n1', '9.9.9.9.in-addr.arpa', 'PTR')).toEqual({ kind: 'foreign' });
  });

  it('records vanish with their endpoint and their network', () => {
    const b = book();
    b.removeEndpoint('n1', 'e1');
    expect(b.lookup('n1', 'web', 'A')).toEqual({ kind: 'foreign' });
    expect(b.lookup('n1', 'svc', 'A')).toEqual({ kind: 'answer', addresses: ['10.0.0.3'] });
    expect(b.lookup('n1', '2.0.0.10.in-addr.arpa', 'PTR')).toEqual({ kind: 'foreign' });
    b.removeNetwork('n1');
    expect(b.lookup('n1', 'db', 'A')).toEqual({ kind: 'foreign' });
    expect(b.endpointCount('n2')).toBe(1);
  });
});
