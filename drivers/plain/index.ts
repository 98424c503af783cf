// tsnull and tshost: networks that create no links at all.
//
// tsnull: an endpoint gets no interface; the container keeps only its loopback.
// tshost: the remote-driver protocol (and CNI) cannot put a container into the host's network
// namespace: that is Docker's built-in `--network host` (or the runtime's hostNetwork), decided
// before any plugin is asked. So a tshost endpoint also gets no interface of its own; what tshost
// adds is the record: the endpoint lists the host's addresses, for tooling and DNS of services
// that are reached on the host. Both are honest about this in the README.

import { NetError } from '../../kernel/errors.js';
import type { DriverContext, EndpointSpec, JoinPlan, NetworkDriver, NetworkSpec } from '../driver.js';

export type PlainKind = 'tsnull' | 'tshost';

export interface PlainNetworkState {
  kind: PlainKind;
  subnets4: string[];
  subnets6: string[];
  internal: boolean;
}

export interface PlainEndpointState {
  /** tshost: the host's global addresses when the endpoint was created. */
  hostAddresses: string[];
}

export function plainDriver(kind: PlainKind): NetworkDriver<PlainNetworkState, PlainEndpointState> {
  return {
    name: kind,
    parseOptions(raw: Record<string, string>): void {
      const keys = Object.keys(raw);
      if (keys.length) throw new NetError('UNSUPPORTED_OPTION', `${kind} takes no options; got ${keys.map((k) => JSON.stringify(k)).join(', ')}`);
    },
    async createNetwork(_ctx: DriverContext, spec: NetworkSpec): Promise<PlainNetworkState> {
      this.parseOptions(spec.rawOptions);
      return { kind, subnets4: spec.ipv4.map((s) => s.subnet), subnets6: spec.ipv6.map((s) => s.subnet), internal: spec.internal };
    },
    async deleteNetwork(): Promise<void> {},
    async createEndpoint(ctx: DriverContext, _net: PlainNetworkState, _ep: EndpointSpec): Promise<PlainEndpointState> {
      if (kind === 'tsnull') return { hostAddresses: [] };
      const addrs = await ctx.host.addrList();
      return { hostAddresses: addrs.filter((a) => a.scope === 0 && !a.ip.startsWith('127.') && a.ip !== '::1').map((a) => a.cidr) };
    },
    /** No interface, no gateway: Docker must not add docker_gwbridge either. */
    join(): JoinPlan {
      return { staticRoutes: [] };
    },
    async deleteEndpoint(): Promise<void> {},
  };
}
