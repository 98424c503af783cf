import { describe, expect, it } from 'vitest';
import { Attrs, attr, encodeAttrs } from '../../kernel/nl/attr.js';
import { IFLA, IFLA_INFO, NLM_F, NLMSG, RTM } from '../../kernel/nl/constants.js';
import { bytesToIp, bytesToMac, ipToBytes, macToBytes, parseCidr } from '../../kernel/nl/ip.js';
import { addrMessage, ipv4Broadcast, parseAddr } from '../../kernel/nl/addr.js';
import { ifinfomsg, linkCreateAttrs, parseLink } from '../../kernel/nl/link.js';
import { decodeError, encodeRequest, parseReply } from '../../kernel/nl/message.js';
import { neighMessage } from '../../kernel/nl/neigh.js';
import { routeMessage } from '../../kernel/nl/route.js';

describe('attributes', () => {
  it('encodes a string attribute with NUL and padding, byte for byte', () => {
    // "br0\0" is 4 bytes: len 8, type 3, no padding needed.
    expect(encodeAttrs([attr.str(IFLA.IFNAME, 'br0')]).toString('hex')).toBe('08000300' + '62723000');
    // "veth1\0" is 6 bytes: len 10, padded to 12.
    expect(encodeAttrs([attr.str(IFLA.IFNAME, 'veth1')]).toString('hex')).toBe('0a000300' + '766574683100' + '0000');
  });

  it('nests with NLA_F_NESTED and the summed, aligned length', () => {
    const buf = encodeAttrs([attr.nest(IFLA.LINKINFO, [attr.str(IFLA_INFO.KIND, 'veth')])]);
    // outer: len 4 + (4 + 5 → 12) = 16, type 18|0x8000; inner "veth\0" len 9 padded to 12.
    expect(buf.toString('hex')).toBe('10001280' + '09000100' + '7665746800' + '000000');
    const outer = new Attrs(buf);
    expect(outer.nested(IFLA.LINKINFO)?.str(IFLA_INFO.KIND)).toBe('veth');
  });

  it('round-trips integer widths and network-order ports', () => {
    const buf = encodeAttrs([attr.u8(1, 7), attr.u16(2, 513), attr.u32(3, 0xdeadbeef), attr.be16(4, 4789)]);
    const a = new Attrs(buf);
    expect([a.u8(1), a.u16(2), a.u32(3), a.be16(4)]).toEqual([7, 513, 0xdeadbeef, 4789]);
    expect(buf.subarray(buf.length - 4, buf.length - 2).toString('hex')).toBe('12b5'); // 4789 big-endian
  });

  it('stops at a malformed tail instead of reading past it', () => {
    const good = encodeAttrs([attr.u32(1, 5)]);
    const bad = Buffer.concat([good, Buffer.from([0xff, 0x00, 0x02, 0x00])]); // claims 255 bytes
    const a = new Attrs(bad);
    expect(a.u32(1)).toBe(5);
    expect(a.has(2)).toBe(false);
  });
});

describe('addresses as bytes', () => {
  it.each([
    ['10.0.0.1', '0a000001'],
    ['::1', '00000000000000000000000000000001'],
    ['2001:db8::1:0:0:1', '20010db8000000000001000000000001'],
    ['fe80::', 'fe800000000000000000000000000000'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
  ])('%s', (text, hex) => {
    expect(ipToBytes(text).toString('hex')).toBe(hex);
  });

  it.each([
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of two equal runs is compressed
    ['2001:0db8:0000:0000:0000:0000:0002:0001', '2001:db8::2:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['0:0:0:0:0:0:0:0', '::'],
  ])('formats %s as %s (RFC 5952)', (input, canonical) => {
    expect(bytesToIp(ipToBytes(input))).toBe(canonical);
  });

  it('parses CIDRs and rejects bad ones', () => {
    expect(parseCidr('10.1.2.3/24')).toEqual({ ip: '10.1.2.3', prefixLen: 24, family: 4 });
    expect(parseCidr('fd00::1')).toEqual({ ip: 'fd00::1', prefixLen: 128, family: 6 });
    expect(() => parseCidr('10.1.2.3/33')).toThrow(/prefix/);
    expect(() => parseCidr('10.1.2/24')).toThrow(/not an IP/);
  });

  it('MACs', () => {
    expect(bytesToMac(macToBytes('02:42:AC:11:00:02'))).toBe('02:42:ac:11:00:02');
    expect(() => macToBytes('02:42:ac:11:00')).toThrow(/MAC/);
  });

  it('computes IPv4 broadcast like `brd +`', () => {
    expect(ipv4Broadcast('10.1.2.3', 24)).toBe('10.1.2.255');
    expect(ipv4Broadcast('10.1.2.3', 8)).toBe('10.255.255.255');
    expect(ipv4Broadcast('10.1.2.3', 31)).toBeUndefined();
  });
});

describe('messages', () => {
  it('frames a request: length, type, flags with REQUEST, seq, port id', () => {
    const buf = encodeRequest({ type: RTM.NEWLINK, flags: NLM_F.ACK, header: ifinfomsg({ index: 5, flags: 1, change: 1 }), attrs: [] }, 7, 99);
    expect(buf.length).toBe(32);
    expect(buf.readUInt32LE(0)).toBe(32);
    expect(buf.readUInt16LE(4)).toBe(RTM.NEWLINK);
    expect(buf.readUInt16LE(6)).toBe(NLM_F.ACK | NLM_F.REQUEST);
    expect(buf.readUInt32LE(8)).toBe(7);
    expect(buf.readUInt32LE(12)).toBe(99);
    expect(buf.readInt32LE(20)).toBe(5); // ifi_index
    expect(buf.readUInt32LE(24)).toBe(1); // ifi_flags IFF_UP
  });

  it('decodes an error with extended ack text', () => {
    // NLMSG_ERROR, flags CAPPED|ACK_TLVS, error -95, original header (16 bytes), NLMSGERR_ATTR_MSG.
    const orig = Buffer.alloc(16);
    orig.writeUInt32LE(40, 0);
    const tlv = encodeAttrs([attr.str(1, 'Unknown device type')]);
    const payload = Buffer.concat([Buffer.from([0xa1, 0xff, 0xff, 0xff]), orig, tlv]);
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(16 + payload.length, 0);
    hdr.writeUInt16LE(NLMSG.ERROR, 4);
    hdr.writeUInt16LE(NLM_F.CAPPED | NLM_F.ACK_TLVS, 6);
    const reply = parseReply(Buffer.concat([hdr, payload]));
    expect(reply.status).toEqual({ errno: 95, extack: 'Unknown device type' });
    expect(decodeError({ type: NLMSG.ERROR, flags: 0, seq: 0, payload: Buffer.alloc(20) }).errno).toBe(-0);
  });

  it('reports a dump interrupted by a concurrent change', () => {
    const m = Buffer.alloc(20);
    m.writeUInt32LE(20, 0);
    m.writeUInt16LE(RTM.NEWLINK, 4);
    m.writeUInt16LE(NLM_F.MULTI | NLM_F.DUMP_INTR, 6);
    const done = Buffer.alloc(20);
    done.writeUInt32LE(20, 0);
    done.writeUInt16LE(NLMSG.DONE, 4);
    const r = parseReply(Buffer.concat([m, done]));
    expect(r.interrupted).toBe(true);
    expect(r.messages).toHaveLength(1);
  });

  it('rejects a reply whose length runs past the buffer', () => {
    const m = Buffer.alloc(16);
    m.writeUInt32LE(64, 0);
    expect(() => parseReply(m)).toThrow(/malformed/);
  });
});

describe('link, address, route and neighbour bodies', () => {
  const fds = (p: string): number => (p === '/run/netns/x' ? 42 : -1);

  it('veth with the peer created in another namespace', () => {
    const attrs = linkCreateAttrs({ kind: 'veth', name: 'h0', mtu: 1400, peer: { name: 'c0', netns: { path: '/run/netns/x' } } }, fds);
    const a = new Attrs(encodeAttrs(attrs));
    expect(a.str(IFLA.IFNAME)).toBe('h0');
    expect(a.u32(IFLA.MTU)).toBe(1400);
    const info = a.nested(IFLA.LINKINFO)!;
    expect(info.str(IFLA_INFO.KIND)).toBe('veth');
    const peer = info.nested(IFLA_INFO.DATA)!.buf(1)!;
    const peerAttrs = new Attrs(peer, 16); // after the embedded ifinfomsg
    expect(peerAttrs.str(IFLA.IFNAME)).toBe('c0');
    expect(peerAttrs.u32(IFLA.NET_NS_FD)).toBe(42);
    expect(peerAttrs.u32(IFLA.MTU)).toBe(1400);
    // Both ends ask for one queue each way, so the kernel never has to cut them back.
    for (const x of [a, peerAttrs]) {
      expect(x.u32(IFLA.NUM_TX_QUEUES)).toBe(1);
      expect(x.u32(IFLA.NUM_RX_QUEUES)).toBe(1);
    }
  });

  it('vxlan carries id, port in network order and learning off', () => {
    const attrs = linkCreateAttrs({ kind: 'vxlan', name: 'vx0', vni: 4242, local: '192.0.2.1' }, fds, 3);
    const data = new Attrs(encodeAttrs(attrs)).nested(IFLA.LINKINFO)!.nested(IFLA_INFO.DATA)!;
    expect(data.u32(1)).toBe(4242);
    expect(data.be16(15)).toBe(4789);
    expect(data.u8(7)).toBe(0);
    expect(bytesToIp(data.buf(4)!)).toBe('192.0.2.1');
    expect(data.u32(3)).toBe(3);
  });

  it('parses a link message back', () => {
    const attrs = encodeAttrs([
      attr.str(IFLA.IFNAME, 'br9'), attr.u32(IFLA.MTU, 9000), attr.raw(IFLA.ADDRESS, macToBytes('02:00:00:00:00:09')),
      attr.u32(IFLA.MASTER, 4), attr.nest(IFLA.LINKINFO, [attr.str(IFLA_INFO.KIND, 'bridge')]),
    ]);
    const link = parseLink(Buffer.concat([ifinfomsg({ index: 9, flags: 1 }), attrs]));
    expect(link).toMatchObject({ index: 9, name: 'br9', mtu: 9000, mac: '02:00:00:00:00:09', master: 4, kind: 'bridge', up: true });
  });

  it('IPv6 address with nodad sets IFA_F_NODAD and round-trips', () => {
    const { header, attrs } = addrMessage(3, 'fd00::5/64', { nodad: true });
    const parsed = parseAddr(Buffer.concat([header, encodeAttrs(attrs)]));
    expect(parsed).toMatchObject({ index: 3, family: 6, ip: 'fd00::5', prefixLen: 64, cidr: 'fd00::5/64' });
    expect(parsed.flags & 0x02).toBe(0x02);
  });

  it('routes: link scope without gateway, onlink flag, wildcard scope on delete', () => {
    const a = routeMessage({ dst: '10.9.0.0/16', dev: { index: 2 } }, 2, false);
    expect(a.header.readUInt8(1)).toBe(16); // dst_len
    expect(a.header.readUInt8(6)).toBe(253); // RT_SCOPE_LINK
    const b = routeMessage({ dst: 'default', gateway: '10.9.0.1', onlink: true }, 2, false);
    expect(b.header.readUInt32LE(8)).toBe(4); // RTNH_F_ONLINK
    expect(b.header.readUInt8(6)).toBe(0);
    expect(routeMessage({ dst: '10.9.0.0/16' }, 2, true).header.readUInt8(6)).toBe(255);
    expect(() => routeMessage({ dst: 'default' }, 2, false)).toThrow(/family/);
  });

  it('FDB entry for a remote VTEP: AF_BRIDGE, NTF_SELF, permanent', () => {
    const { header, attrs } = neighMessage({ dev: { index: 7 }, family: 'bridge', mac: '00:00:00:00:00:00', ip: '192.0.2.9' }, 7);
    expect(header.readUInt8(0)).toBe(7);
    expect(header.readUInt16LE(8)).toBe(0x80);
    expect(header.readUInt8(10)).toBe(0x02);
    const a = new Attrs(encodeAttrs(attrs));
    expect(bytesToIp(a.buf(1)!)).toBe('192.0.2.9');
  });
});
