// /IpamDriver.* calls, translated to tsipam.

import { randomBytes } from 'node:crypto';
import { GLOBAL_SPACE, LOCAL_SPACE, type Ipam } from '../ipam/ipam.js';
import type { Handler } from './server.js';
import { obj, str } from './wire.js';

const GATEWAY_REQUEST = 'com.docker.network.gateway';

export function ipamRoutes(ipam: Ipam): Array<[string, Handler]> {
  return [
    // Replay is not needed: tsipam keeps its own state across plugin and Docker restarts.
    ['/IpamDriver.GetCapabilities', async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false })],
    ['/IpamDriver.GetDefaultAddressSpaces', async () => ({ LocalDefaultAddressSpace: LOCAL_SPACE, GlobalDefaultAddressSpace: GLOBAL_SPACE })],
    ['/IpamDriver.RequestPool', async (b) => {
      const pool = await ipam.requestPool({
        addressSpace: str(b, 'AddressSpace', { optional: true }),
        pool: str(b, 'Pool', { optional: true }),
        subPool: str(b, 'SubPool', { optional: true }),
        v6: b.V6 === true,
      });
      return { PoolID: pool.id, Pool: pool.subnet, Data: {} };
    }],
    ['/IpamDriver.ReleasePool', async (b) => {
      await ipam.releasePool(str(b, 'PoolID'));
      return {};
    }],
    ['/IpamDriver.RequestAddress', async (b) => {
      const options = obj(b, 'Options');
      const isGateway = options.RequestAddressType === GATEWAY_REQUEST;
      const poolId = str(b, 'PoolID');
      const address = str(b, 'Address', { optional: true });
      const cidr = await ipam.requestAddress(poolId, {
        // Docker's request names no endpoint, so two requests for one address cannot be told
        // from a retry: each explicit one gets an owner of its own and a taken address is
        // refused, as Docker's own IPAM does (--ip of a running container must fail).
        owner: isGateway ? `gateway:${poolId}` : `docker:${address ? `${address}#${randomBytes(4).toString('hex')}` : 'dynamic'}`,
        kind: isGateway ? 'gateway' : 'endpoint',
        ...(address ? { address } : {}),
      });
      return { Address: cidr, Data: {} };
    }],
    ['/IpamDriver.ReleaseAddress', async (b) => {
      await ipam.releaseAddress(str(b, 'PoolID'), str(b, 'Address'));
      return {};
    }],
  ];
}
