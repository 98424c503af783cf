// The nf_tables generation of the daemon's namespace: a counter the kernel bumps at every
// committed nf_tables transaction, whoever commits it (iptables-nft, nft, firewalld, Docker).
// The firewall reads it around its own renders: unchanged since the end of the last one means no
// rule or chain changed meanwhile, so what was verified then still holds (iptables.ts says how
// that spares an iptables-save). iptables-nft reads the same counter to detect concurrent writers.

import { NetlinkSocket } from '../netlink-socket.js';
import { Attrs } from '../nl/attr.js';
import { AF, NETLINK } from '../nl/constants.js';
import { nfgenmsg } from '../nl/conntrack.js';

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = (NFNL_SUBSYS_NFTABLES << 8) | 15;
const NFT_MSG_GETGEN = (NFNL_SUBSYS_NFTABLES << 8) | 16;
const NFTA_GEN_ID = 1;
const NFGENMSG_LEN = 4;

class NftSocket extends NetlinkSocket {
  static async open(): Promise<NftSocket> {
    const { lane, portId } = await NetlinkSocket.openLane(undefined, NETLINK.NETFILTER);
    return new NftSocket(undefined, lane, portId, (type) => (type === NFT_MSG_GETGEN ? 'NFT_MSG_GETGEN' : `type ${type}`));
  }

  async generation(): Promise<number> {
    const msgs = await this.exchange(NFT_MSG_GETGEN, 0, nfgenmsg(AF.UNSPEC), [], 'nf_tables generation', true);
    const m = msgs.find((x) => x.type === NFT_MSG_NEWGEN);
    const id = m ? new Attrs(m.payload, NFGENMSG_LEN).buf(NFTA_GEN_ID) : undefined;
    if (!id || id.length < 4) throw new Error('nf_tables answered without a generation');
    return id.readUInt32BE(0);
  }
}

/** The current generation, or undefined when nf_tables cannot say (no module, no permission). */
export async function nftGeneration(): Promise<number | undefined> {
  let s: NftSocket | undefined;
  try {
    s = await NftSocket.open();
    return await s.generation();
  } catch {
    return undefined;
  } finally {
    await s?.close();
  }
}
