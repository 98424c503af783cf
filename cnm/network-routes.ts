// /NetworkDriver.* calls, translated to NetworkService.

import type { FastifyBaseLogger } from 'fastify';
import { NetError } from '../kernel/errors.js';
import type { NetworkService } from '../core/network-service.js';
import { parseDockerPortmap } from '../drivers/shared/ports.js';
import type { DriverName } from '../drivers/driver.js';
import type { Handler } from './server.js';
import { arr, cidr, id, mac as macField, obj, str } from './wire.js';

export function networkRoutes(svc: NetworkService, driver: DriverName, _log: FastifyBaseLogger): Array<[string, Handler]> {
  return [
    ['/NetworkDriver.GetCapabilities', async () => ({ Scope: 'local', ConnectivityScope: 'local' })],
    ['/NetworkDriver.CreateNetwork', async (b) => {
      const options = obj(b, 'Options');
      const generic = options['com.docker.network.generic'] ?? {};
      if (typeof generic !== 'object' || Array.isArray(generic)) throw new NetError('INVALID_ARGUMENT', 'Options.com.docker.network.generic must be an object');
      const raw: Record<string, string> = {};
      for (const [k, v] of Object.entries(generic)) raw[k] = typeof v === 'string' ? v : String(v);
      const ipData = (key: string) => arr(b, key).map((d) => ({
        subnet: cidr(d, 'Pool'),
        ...(d.Gateway ? { gateway: cidr(d, 'Gateway') } : {}),
      }));
      await svc.createNetwork({
        id: id(b, 'NetworkID'),
        driver,
        ipv4: ipData('IPv4Data'),
        ipv6: ipData('IPv6Data'),
        internal: options['com.docker.network.internal'] === true || options['com.docker.network.internal'] === 'true',
        enableIPv6: options['com.docker.network.enable_ipv6'] === true || options['com.docker.network.enable_ipv6'] === 'true',
        aux: [...arr(b, 'IPv4Data'), ...arr(b, 'IPv6Data')].flatMap((d) => {
          const aux = obj(d, 'AuxAddresses');
          return Object.keys(aux).map((k) => cidr(aux, k));
        }),
        rawOptions: raw,
      });
      return {};
    }],
    ['/NetworkDriver.DeleteNetwork', async (b) => {
      await svc.deleteNetwork(id(b, 'NetworkID'));
      return {};
    }],
    ['/NetworkDriver.CreateEndpoint', async (b) => {
      const iface = obj(b, 'Interface');
      const requestedMac = macField(iface, 'MacAddress');
      const address4 = cidr(iface, 'Address', { optional: true });
      const address6 = cidr(iface, 'AddressIPv6', { optional: true });
      const ep = await svc.createEndpoint({
        id: id(b, 'EndpointID'),
        networkId: id(b, 'NetworkID'),
        ...(address4 ? { address4 } : {}),
        ...(address6 ? { address6 } : {}),
        ...(requestedMac ? { mac: requestedMac } : {}),
      });
      // Docker refuses a reply that sets a field it already set; fill in only the MAC it lacks.
      const mac = 'mac' in ep.state ? ep.state.mac : undefined;
      return !requestedMac && mac ? { Interface: { MacAddress: mac } } : {};
    }],
    ['/NetworkDriver.EndpointOperInfo', async () => ({ Value: {} })],
    ['/NetworkDriver.Join', async (b) => {
      const plan = await svc.join(id(b, 'NetworkID'), id(b, 'EndpointID'), str(b, 'SandboxKey', { optional: true }) || undefined);
      return {
        ...(plan.ifName ? { InterfaceName: { SrcName: plan.ifName, DstPrefix: plan.ifPrefix ?? 'eth' } } : {}),
        ...(plan.gateway4 ? { Gateway: plan.gateway4 } : {}),
        ...(plan.gateway6 ? { GatewayIPv6: plan.gateway6 } : {}),
        StaticRoutes: plan.staticRoutes.map((r) => (r.nextHop ? { Destination: r.destination, RouteType: 0, NextHop: r.nextHop } : { Destination: r.destination, RouteType: 1 })),
        DisableGatewayService: !plan.gateway4,
      };
    }],
    ['/NetworkDriver.Leave', async (b) => {
      await svc.leave(id(b, 'NetworkID'), id(b, 'EndpointID'));
      return {};
    }],
    ['/NetworkDriver.DeleteEndpoint', async (b) => {
      await svc.deleteEndpoint(id(b, 'NetworkID'), id(b, 'EndpointID'));
      return {};
    }],
    // Docker runs no proxy for remote drivers: the ports in -p arrive here and are ours to publish.
    ['/NetworkDriver.ProgramExternalConnectivity', async (b) => {
      const bindings = parseDockerPortmap(obj(b, 'Options')['com.docker.network.portmap']);
      await svc.programExternal(id(b, 'NetworkID'), id(b, 'EndpointID'), bindings, { relayIpv6ToIpv4: true, ignoreUnpublishable: true });
      return {};
    }],
    ['/NetworkDriver.RevokeExternalConnectivity', async (b) => {
      await svc.revokeExternal(id(b, 'NetworkID'), id(b, 'EndpointID'));
      return {};
    }],
    ['/NetworkDriver.DiscoverNew', async () => ({})],
    ['/NetworkDriver.DiscoverDelete', async () => ({})],
    ['/NetworkDriver.AllocateNetwork', async () => ({ Options: {} })],
    ['/NetworkDriver.FreeNetwork', async () => ({})],
  ];
}
