// A tsbridge network made on a lab host through the Docker protocol, the calls in dockerd's order
// (pool, gateway address, network): shared by the e2e tests that drive the plugin as dockerd does.

import { pluginCall, type ClusterLab, type LabHost } from '../../bench/cluster-lab.js';

/** n random hex digits (Docker's ids are 64). */
export const hex = (n: number): string => [...Array(n)].map(() => Math.floor(Math.random() * 16).toString(16)).join('');

export interface CnmNetwork {
  networkId: string;
  poolId: string;
  /** The gateway address, without its prefix length. */
  gateway: string;
}

export async function createCnmNetwork(lab: ClusterLab, h: LabHost, pool: string): Promise<CnmNetwork> {
  const ipam = lab.sock(h, 'tsipam');
  const networkId = hex(64);
  const p = await pluginCall(ipam, '/IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: pool, Options: {}, V6: false });
  const gw = await pluginCall(ipam, '/IpamDriver.RequestAddress', { PoolID: p.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
  await pluginCall(lab.sock(h, 'tsbridge'), '/NetworkDriver.CreateNetwork', {
    NetworkID: networkId, Options: { 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: p.Pool, Gateway: gw.Address, AuxAddresses: {} }], IPv6Data: [],
  });
  return { networkId, poolId: p.PoolID, gateway: gw.Address.split('/')[0] };
}
