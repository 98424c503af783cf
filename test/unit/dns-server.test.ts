// The resolver on loopback: real UDP and TCP sockets, hand-made packets, a fake upstream.

import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as dnsPacket from 'dns-packet';
import { Forwarder, frame } from '../../dns/forward.js';
import { RecordBook } from '../../dns/records.js';
import { DnsServer } from '../../dns/server.js';
import { decode, encodeResponse, type Decoded, type Rr } from '../../dns/wire.js';

const port = (): number => 20000 + Math.floor(Math.random() * 20000);

type UpstreamBehaviour = 'answer' | 'silent';

/** A fake upstream resolver on 127.0.0.1 that counts what it is asked. */
async function fakeUpstream(behaviour: UpstreamBehaviour = 'answer'): Promise<{ sock: Socket; port: number; asked: string[] }> {
  const sock = createSocket('udp4');
  const asked: string[] = [];
  sock.on('message', (msg, r) => {
    const q = decode(msg);
    const question = q.questions![0]!;
    asked.push(`${question.name}/${question.type}`);
    if (behaviour === 'silent') return;
    const nx = question.name.startsWith('missing');
    const reply = dnsPacket.encode({
      type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (nx ? 3 : 0), questions: q.questions,
      answers: nx ? [] : [{ type: 'A', name: question.name, ttl: 60, data: '203.0.113.7' }],
      authorities: nx ? [{ type: 'SOA', name: 'test', ttl: 300, data: { mname: 'ns.test', rname: 'h.test', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 30 } }] : [],
    } as dnsPacket.Packet);
    sock.send(reply, r.port, r.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { sock, port: sock.address().port, asked };
}

function udpQuery(p: number, msg: Buffer, host = '127.0.0.1', timeoutMs = 1500): Promise<Decoded | undefined> {
  return new Promise((resolve) => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(decode(m));
    });
    s.send(msg, p, host);
  });
}

function tcpQuery(p: number, msg: Buffer): Promise<Decoded> {
  return new Promise((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port: p });
    let buf = Buffer.alloc(0);
    c.on('connect', () => c.write(frame(msg)));
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        c.end();
        resolve(decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      }
    });
    c.on('error', reject);
  });
}

const q = (name: string, type = 'A', opts: { id?: number; edns?: number } = {}): Buffer =>
  dnsPacket.encode({
    type: 'query', id: opts.id ?? 4242, flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: type as dnsPacket.RecordType, name }],
    ...(opts.edns ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns } as dnsPacket.Answer] } : {}),
  });

/** A resolver on 127.0.0.1 for network n1 (clients: 127.0.0.0/8), forwarding to a fake upstream. */
async function startResolver(seedFirst?: (records: RecordBook) => void) {
  const upstream = await fakeUpstream();
  const records = new RecordBook('tsnet.internal');
  seedFirst?.(records);
  const forwarder = new Forwarder({ servers: ['127.0.0.1'], port: upstream.port, timeoutMs: 300, maxInFlight: 64 });
  const p = port();
  const server = new DnsServer({ records, forwarder, port: p });
  await server.addNetwork({ id: 'n1', listen: ['127.0.0.1'], subnets: ['127.0.0.0/8'], internal: false });
  const stop = async (): Promise<void> => {
    await server.close();
    forwarder.close();
    upstream.sock.close();
  };
  return { upstream, records, forwarder, p, server, stop };
}

describe('resolver protocol', () => {
  let r: Awaited<ReturnType<typeof startResolver>>;
  let server: DnsServer;
  let records: RecordBook;
  let forwarder: Forwarder;
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  let p: number;

  beforeEach(async () => {
    r = await startResolver();
    ({ server, records, forwarder, upstream, p } = r);
    records.setEndpoint('n1', 'e1', { names: ['web'], ipv4: '10.0.0.2' });
    for (let i = 0; i < 100; i++) records.setEndpoint('n1', `m${i}`, { names: ['many'], ipv4: `10.0.1.${i + 1}` });
    for (let i = 0; i < 40; i++) records.setEndpoint('n1', `f${i}`, { names: ['forty'], ipv4: `10.0.2.${i + 1}` });
  });
  afterEach(() => r.stop());

  it('answers A with the ID preserved and the question echoed, authoritative', async () => {
    const r = (await udpQuery(p, q('WEB.tsnet.internal.', 'A', { id: 777 })))!;
    expect(r.id).toBe(777);
    expect(r.questions).toEqual([{ name: 'WEB.tsnet.internal', type: 'A', class: 'IN' }]);
    expect(r.rcode).toBe('NOERROR');
    expect(r.flag_qr).toBe(true);
    expect((r as { flag_aa?: boolean }).flag_aa).toBe(true);
    expect(r.answers!.map((a) => a.data)).toEqual(['10.0.0.2']);
  });

  it('NXDOMAIN for unknown names in our domain, NODATA (with SOA) for a known name without the type', async () => {
    const nx = (await udpQuery(p, q('nope.tsnet.internal')))!;
    expect(nx.rcode).toBe('NXDOMAIN');
    expect(nx.authorities![0]!.type).toBe('SOA');
    const nodata = (await udpQuery(p, q('web', 'AAAA')))!;
    expect(nodata.rcode).toBe('NOERROR');
    expect(nodata.answers).toEqual([]);
    expect(nodata.authorities![0]!.type).toBe('SOA');
  });

  it('a large answer over UDP carries as many whole records as fit, with TC; complete over TCP', async () => {
    // Header 12 + question "many" 10 + 16 per record (the name a pointer to the question): 30
    // records in plain DNS's 512 bytes. Clients that cannot retry over TCP (musl, busybox) use them.
    const udp = (await udpQuery(p, q('many')))!;
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toHaveLength(30);
    const all = new Set(Array.from({ length: 100 }, (_, i) => `10.0.1.${i + 1}`));
    expect(udp.answers!.every((a) => a.name === 'many' && all.has(String(a.data)))).toBe(true);
    expect(new Set(udp.answers!.map((a) => a.data)).size).toBe(30);
    // 40 records (652 bytes) exceed 512 but fit the EDNS0 size the client offers.
    expect((await udpQuery(p, q('forty')))!.flag_tc).toBe(true);
    const edns = (await udpQuery(p, q('forty', 'A', { edns: 4096 })))!;
    expect(edns.flag_tc).toBe(false);
    expect(edns.answers).toHaveLength(40);
    expect(edns.additionals!.find((a) => a.type === 'OPT')?.udpPayloadSize).toBe(1232);
    // We never send more than 1232 bytes over UDP, whatever the client offers: 74 of 100 records,
    // and the OPT record still last.
    const big = (await udpQuery(p, q('many', 'A', { edns: 4096 })))!;
    expect(big.flag_tc).toBe(true);
    expect(big.answers).toHaveLength(74);
    expect(big.additionals!.map((a) => a.type)).toEqual(['OPT']);
    const tcp = await tcpQuery(p, q('many'));
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(100);
  });

  it('round-robin: a shared name comes back in varying order', async () => {
    const orders = new Set<string>();
    for (let i = 0; i < 5; i++) orders.add((await tcpQuery(p, q('many'))).answers!.map((a) => a.data).join(','));
    expect(orders.size).toBeGreaterThan(1);
  });

  it('forwards foreign names, caches them, and coalesces identical queries in flight', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => udpQuery(p, q('example.test', 'A', { id: i }))));
    for (const [i, a] of answers.entries()) {
      expect(a!.id).toBe(i);
      expect(a!.answers!.map((x) => x.data)).toEqual(['203.0.113.7']);
    }
    expect(upstream.asked.filter((x) => x === 'example.test/A')).toHaveLength(1);
    const again = (await udpQuery(p, q('example.test')))!;
    expect(again.answers![0]!.data).toBe('203.0.113.7');
    expect(upstream.asked.filter((x) => x === 'example.test/A')).toHaveLength(1); // from the cache
    // Negative answers are cached for the SOA minimum (RFC 2308).
    expect((await udpQuery(p, q('missing.test')))!.rcode).toBe('NXDOMAIN');
    expect((await udpQuery(p, q('missing.test')))!.rcode).toBe('NXDOMAIN');
    expect(upstream.asked.filter((x) => x === 'missing.test/A')).toHaveLength(1);
    expect(forwarder.cache.hits).toBeGreaterThanOrEqual(2);
  });

  it('refuses clients that are not on the network, and never forwards for them', async () => {
    const p2 = port();
    const s2 = new DnsServer({ records, forwarder, port: p2 });
    await s2.addNetwork({ id: 'n2', listen: ['127.0.0.1'], subnets: ['10.99.0.0/16'], internal: false });
    try {
      const r = (await udpQuery(p2, q('example.org')))!;
      expect(r.rcode).toBe('REFUSED');
      expect(upstream.asked).not.toContain('example.org/A');
    } finally {
      await s2.close();
    }
  });

  it('internal networks answer their own names and forward nothing', async () => {
    const p2 = port();
    const s2 = new DnsServer({ records, forwarder, port: p2 });
    await s2.addNetwork({ id: 'n1', listen: ['127.0.0.1'], subnets: ['127.0.0.0/8'], internal: true });
    try {
      expect((await udpQuery(p2, q('web')))!.answers![0]!.data).toBe('10.0.0.2');
      expect((await udpQuery(p2, q('example.net')))!.rcode).toBe('REFUSED');
      expect(upstream.asked).not.toContain('example.net/A');
    } finally {
      await s2.close();
    }
  });

  it('drops malformed, truncated, oversized and response packets without harm, then answers as before', async () => {
    const good = q('web');
    const bad = [
      Buffer.from([1, 2, 3]),
      good.subarray(0, good.length - 3),
      Buffer.concat([good.subarray(0, 12), Buffer.alloc(3000, 0xff)]),
      dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'web' }] }),
      Buffer.alloc(0),
    ];
    for (const b of bad) expect(await udpQuery(p, b, '127.0.0.1', 200)).toBeUndefined();
    const multi = dnsPacket.encode({ type: 'query', id: 9, questions: [{ type: 'A', name: 'web' }, { type: 'A', name: 'web' }] });
    expect((await udpQuery(p, multi))!.rcode).toBe('FORMERR');
    expect((await udpQuery(p, good))!.answers![0]!.data).toBe('10.0.0.2');
    expect(server.stats.dropped).toBeGreaterThanOrEqual(4);
  });
});

describe('native responder table (UDP answers for local names)', () => {
  let r: Awaited<ReturnType<typeof startResolver>>;
  let server: DnsServer;
  let records: RecordBook;
  let forwarder: Forwarder;
  let p: number;

  // Records first, then the listener: the table starts full, as after a daemon restart.
  beforeEach(async () => {
    r = await startResolver((book) => book.setEndpoint('n1', 'e1', { names: ['web', 'alias'], ipv4: '10.0.0.2', ipv6: 'fd00::2' }));
    ({ server, records, forwarder, p } = r);
  });
  afterEach(() => r.stop());

  it('answers names restored before the listener from the table, the same as the JS path would', async () => {
    const l = server.listening('n1')!;
    for (const [name, type] of [['web', 'A'], ['ALIAS.tsnet.internal.', 'AAAA'], ['2.0.0.10.in-addr.arpa', 'PTR']] as const) {
      const before = server.stats.fromTable;
      const msg = q(name, type, { id: 31, edns: 1400 });
      const fromTable = (await udpQuery(p, msg))!;
      expect(server.stats.fromTable).toBe(before + 1);
      const fromJs = decode((await server.answer(l, msg, '127.0.0.1', 'udp'))!);
      expect(fromTable).toEqual(fromJs);
    }
  });

  it('follows the record book at once: a new name is answered, a removed one is not', async () => {
    records.setEndpoint('n1', 'e2', { names: ['db'], ipv4: '10.0.0.3' });
    expect((await udpQuery(p, q('db')))!.answers!.map((a) => a.data)).toEqual(['10.0.0.3']);
    records.setEndpoint('n1', 'e3', { names: ['db'], ipv4: '10.0.0.4' });
    expect((await udpQuery(p, q('db')))!.answers!.map((a) => a.data).sort()).toEqual(['10.0.0.3', '10.0.0.4']);
    records.removeEndpoint('n1', 'e2');
    records.removeEndpoint('n1', 'e3');
    const gone = (await udpQuery(p, q('db.tsnet.internal')))!;
    expect(gone.rcode).toBe('NXDOMAIN'); // from the JS path: the table no longer holds it
    // Bare, it is no longer ours: forwarded, and the upstream's answer comes back.
    expect((await udpQuery(p, q('db')))!.answers!.map((a) => a.data)).toEqual(['203.0.113.7']);
    const fromTable = server.stats.fromTable;
    records.removeNetwork('n1');
    expect((await udpQuery(p, q('web')))!.answers!.map((a) => a.data)).toEqual(['203.0.113.7']);
    expect(server.stats.fromTable).toBe(fromTable);
  });

  it('drops a datagram larger than any query natively, counts it, and answers the next one', async () => {
    const huge = Buffer.concat([q('web'), Buffer.alloc(5000)]);
    expect(await udpQuery(p, huge, '127.0.0.1', 300)).toBeUndefined();
    expect(server.stats.droppedNatively).toBe(1);
    expect(server.stats.dropped).toBe(1);
    expect((await udpQuery(p, q('web')))!.answers![0]!.data).toBe('10.0.0.2');
  });

  it('the table changes under a flood of queries: every answer is one the book held at some instant', async () => {
    const flooder = createSocket('udp4');
    await new Promise<void>((r) => flooder.bind(0, '127.0.0.1', r));
    const seen: string[][] = [];
    flooder.on('message', (m) => seen.push((decode(m).answers ?? []).map((a) => String(a.data)).sort()));
    const until = Date.now() + 1500;
    let flips = 0;
    while (Date.now() < until) {
      for (let i = 0; i < 50; i++) flooder.send(q('flip', 'A', { id: i }), p, '127.0.0.1');
      // The name moves between one and two addresses, and away, while queries are in flight.
      records.setEndpoint('n1', 'f1', { names: ['flip'], ipv4: '10.0.9.1' });
      records.setEndpoint('n1', 'f2', { names: ['flip'], ipv4: '10.0.9.2' });
      records.removeEndpoint('n1', 'f2');
      if (flips++ % 3 === 2) records.removeEndpoint('n1', 'f1');
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 200));
    flooder.close();
    const valid = new Set(['10.0.9.1', '10.0.9.1,10.0.9.2', '203.0.113.7']); // the last: gone, so forwarded
    expect(seen.length).toBeGreaterThan(1000);
    expect(seen.filter((a) => !valid.has(a.join()))).toEqual([]);
    expect(server.stats.fromTable).toBeGreaterThan(500);
  });

  it('an IPv6 listener answers from its table too, and only clients inside its prefix', async () => {
    const p6 = port();
    const s6 = new DnsServer({ records, forwarder, port: p6 });
    await s6.addNetwork({ id: 'n1', listen: ['::1'], subnets: ['::1/128'], internal: false });
    try {
      const r = (await udpQuery(p6, q('alias', 'AAAA'), '::1'))!;
      expect(r.answers!.map((a) => a.data)).toEqual(['fd00::2']);
      expect(s6.stats.fromTable).toBe(1);
      const ptr = (await udpQuery(p6, q('2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa', 'PTR'), '::1'))!;
      expect(ptr.answers!.map((a) => a.data)).toEqual(['web.tsnet.internal']);
      expect(s6.stats.fromTable).toBe(2);
    } finally {
      await s6.close();
    }
    const p7 = port();
    const s7 = new DnsServer({ records, forwarder, port: p7 });
    await s7.addNetwork({ id: 'n1', listen: ['::1'], subnets: ['fd00::/64'], internal: false });
    try {
      expect((await udpQuery(p7, q('alias', 'AAAA'), '::1'))!.rcode).toBe('REFUSED');
      expect(s7.stats.fromTable).toBe(0);
    } finally {
      await s7.close();
    }
  });

  it('round-robin over a shared name, and never answers a client outside the network from the table', async () => {
    for (let i = 0; i < 6; i++) records.setEndpoint('n1', `rr${i}`, { names: ['pool'], ipv4: `10.0.3.${i + 1}` });
    // Shuffled, not only rotated: some order is no rotation of another.
    const orders: string[][] = [];
    for (let i = 0; i < 30; i++) orders.push((await udpQuery(p, q('pool')))!.answers!.map((a) => String(a.data)));
    expect(new Set(orders.map((o) => o[0])).size).toBeGreaterThan(1);
    const rotationOf = (a: string[], b: string[]): boolean => a.some((_, k) => [...a.slice(k), ...a.slice(0, k)].join() === b.join());
    expect(orders.some((o) => !rotationOf(orders[0]!, o))).toBe(true);
    const p2 = port();
    const s2 = new DnsServer({ records, forwarder, port: p2 });
    await s2.addNetwork({ id: 'n1', listen: ['127.0.0.1'], subnets: ['10.99.0.0/16'], internal: false });
    try {
      expect((await udpQuery(p2, q('web')))!.rcode).toBe('REFUSED');
      expect(s2.stats.fromTable).toBe(0);
      expect(s2.stats.refused).toBe(1);
    } finally {
      await s2.close();
    }
  });
});

describe('resolver under a flood for a name whose upstream never answers', () => {
  it('keeps answering other queries, with queries in flight and memory bounded', async () => {
    const upstream = await fakeUpstream('silent');
    const records = new RecordBook();
    records.setEndpoint('n1', 'e1', { names: ['web'], ipv4: '10.0.0.2' });
    const forwarder = new Forwarder({ servers: ['127.0.0.1'], port: upstream.port, timeoutMs: 500, maxInFlight: 32 });
    const p = port();
    const server = new DnsServer({ records, forwarder, port: p });
    await server.addNetwork({ id: 'n1', listen: ['127.0.0.1'], subnets: ['127.0.0.0/8'], internal: false });
    try {
      const flooder = createSocket('udp4');
      await new Promise<void>((r) => flooder.bind(0, '127.0.0.1', r));
      const heapBefore = process.memoryUsage().heapUsed;
      for (let i = 0; i < 5000; i++) flooder.send(q(`dead${i % 500}.blackhole.test`, 'A', { id: i }), p, '127.0.0.1');
      // Like a stub resolver, retry a lost datagram (a flood can fill the socket buffer).
      let r: Decoded | undefined;
      for (let attempt = 0; attempt < 5 && !r; attempt++) r = await udpQuery(p, q('web', 'A', { id: 60000 + attempt }), '127.0.0.1', 400);
      expect(r?.answers?.[0]?.data).toBe('10.0.0.2');
      expect(forwarder.inFlightCount).toBeLessThanOrEqual(32);
      await new Promise((res) => setTimeout(res, 800));
      expect(forwarder.inFlightCount).toBe(0);
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(50 * 1024 * 1024);
      // Dead names were remembered briefly as failures, so the upstream was not asked 5,000 times.
      expect(upstream.asked.length).toBeLessThan(600);
      flooder.close();
    } finally {
      await server.close();
      forwarder.close();
      upstream.sock.close();
    }
  });
});

describe('encodeResponse: records under other names (forwarded answers)', () => {
  it('cuts at a whole record, keeps the leading ones, sets TC; fits unchanged when small', () => {
    const questions = [{ name: 'svc.example.test', type: 'A' as const, class: 'IN' as const }];
    const answers = [
      { type: 'CNAME', name: 'svc.example.test', ttl: 60, data: 'lb.example.test' },
      ...Array.from({ length: 40 }, (_, i) => ({ type: 'A', name: 'lb.example.test', ttl: 60, data: `192.0.2.${i + 1}` })),
    ] as Rr[];
    const cut = dnsPacket.decode(encodeResponse({ id: 9, flags: 0x8180, questions }, answers, [], 512)) as Decoded;
    const bytes = encodeResponse({ id: 9, flags: 0x8180, questions }, answers, [], 512).length;
    expect(bytes).toBeLessThanOrEqual(512);
    expect(cut.flag_tc).toBe(true);
    expect(cut.answers![0]!.type).toBe('CNAME');
    // Each uncompressed A under "lb.example.test" is 31 bytes: one more would not fit.
    expect(bytes + 31).toBeGreaterThan(512);
    expect(cut.answers!.slice(1).map((a) => a.data)).toEqual(answers.slice(1, cut.answers!.length).map((a) => a.data));
    const whole = dnsPacket.decode(encodeResponse({ id: 9, flags: 0x8180, questions }, answers.slice(0, 3), [], 512)) as Decoded;
    expect(whole.flag_tc).toBe(false);
    expect(whole.answers).toHaveLength(3);
  });
});
