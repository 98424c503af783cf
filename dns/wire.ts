// dns-packet with the fields its decoder fills in but its type definitions omit.

import * as dnsPacket from 'dns-packet';

export type Rr = dnsPacket.Answer & { ttl?: number; class?: string };

export type Decoded = dnsPacket.Packet & {
  rcode?: string;
  opcode?: string;
  flag_qr?: boolean;
  flag_tc?: boolean;
  flag_rd?: boolean;
  flag_do?: boolean;
  answers?: Rr[];
  authorities?: Rr[];
  additionals?: Array<Rr & { udpPayloadSize?: number }>;
};

export function decode(buf: Buffer): Decoded {
  return dnsPacket.decode(buf) as Decoded;
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

export { dnsPacket };
