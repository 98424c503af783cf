// What a network driver is: a few typed lifecycle steps. The protocol front-ends (cnm/, cni/)
// translate their wire formats into these calls; a driver never knows which one called it.
// NetworkService finds a record's driver in one registry and calls the same steps for all.

import type { Tx } from '../core/tx.js';
import type { IptablesFirewall } from '../kernel/firewall/iptables.js';
import type { NetlinkHandle } from '../kernel/netlink.js';
import type { NetnsRef } from '../kernel/types.js';
import type { ClusterState } from './overlay/cluster.js';
import type { LinkReaper } from './shared/reaper.js';

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface DriverContext {
  /** Netlink bound to the namespace the daemon runs in (the "host"). */
  readonly host: NetlinkHandle;
  readonly firewall: IptablesFirewall;
  readonly log: Logger;
  /** Deletes veths in the background (the daemon); absent, deletion is synchronous (CNI standalone). */
  readonly reaper?: LinkReaper;
  /** Alias marking links this store created ("tsnet:<id>", see core/owner.ts). */
  readonly owner?: string;
  /** MACs for links this store creates, recognisable from creation on (core/owner.ts). */
  readonly ownedMac?: (stableFor?: string) => string;
  /** The cluster store, when the daemon runs with --cluster-store (tsoverlay needs it). */
  readonly cluster?: ClusterState;
}

export type DriverName = 'tsbridge' | 'tsoverlay' | 'tsmacvlan' | 'tsnull' | 'tshost';

export interface NetworkSpec {
  id: string;
  /** Which driver; tsbridge when absent (the CNI front-end only makes bridge networks). */
  driver?: DriverName;
  /** IPv4 subnets with their gateway ("ip/len"), as IPAM gave them. */
  ipv4: Array<{ subnet: string; gateway?: string }>;
  ipv6: Array<{ subnet: string; gateway?: string }>;
  internal: boolean;
  enableIPv6: boolean;
  /** Addresses IPAM reserved outside the container range (Docker's --aux-address), "ip/len". */
  aux?: string[];
  /** Driver options exactly as the user gave them (-o k=v); the driver parses them once. */
  rawOptions: Record<string, string>;
}

export interface EndpointSpec {
  id: string;
  networkId: string;
  /** "ip/len" */
  address4?: string;
  address6?: string;
  mac?: string;
  /**
   * Create the container end directly inside the sandbox under its final name (CNI). Moving a
   * link between namespaces afterwards costs the kernel an RCU grace period (~20 ms); Docker
   * moves it itself, so the Docker front-end leaves this unset.
   */
  sandbox?: { netns: NetnsRef; ifName: string };
}

/** What the sandbox must look like after a join: the front-end (Docker or our CNI) applies it. */
export interface JoinPlan {
  /** The interface, still in the host namespace, that goes into the container; none for tsnull/tshost. */
  ifName?: string;
  /** What its name in the container starts with, before the index the runtime adds ("eth" when unset). */
  ifPrefix?: string;
  gateway4?: string;
  gateway6?: string;
  staticRoutes: Array<{ destination: string; nextHop?: string }>;
}

/** Another network on this host, as a driver sees it when its choices depend on the others. */
export interface SiblingNetwork {
  readonly id: string;
  readonly driver: DriverName;
  /** The sibling's own driver's state; a driver reads only the states of its own kind. */
  readonly state: unknown;
}

/**
 * A driver's lifecycle over the state it persists: NetState for a network, EpState for an
 * endpoint. The service stores both and hands them back; every step that changes the kernel
 * registers its undo on the Tx it is given.
 */
export interface NetworkDriver<NetState, EpState> {
  readonly name: DriverName;
  /** Refuses unknown or malformed options before anything is touched. */
  parseOptions(raw: Record<string, string>): unknown;
  createNetwork(ctx: DriverContext, spec: NetworkSpec, tx: Tx, siblings: readonly SiblingNetwork[]): Promise<NetState>;
  /** Idempotent; siblings are the networks that stay. */
  deleteNetwork(ctx: DriverContext, net: NetState, siblings: readonly SiblingNetwork[]): Promise<void>;
  createEndpoint(ctx: DriverContext, net: NetState, ep: EndpointSpec, tx: Tx): Promise<EpState>;
  /** Idempotent: what is already gone is fine. */
  deleteEndpoint(ctx: DriverContext, net: NetState, id: string, ep: EpState): Promise<void>;
  join(net: NetState, ep: EpState): JoinPlan;
  /**
   * The container is leaving; its interface is still in `sandbox` (the namespace the front-end
   * named at join). Optional: a driver takes the interface out of service there when that spares
   * work later. Best effort: a failure is logged, never returned.
   */
  leave?(ctx: DriverContext, net: NetState, id: string, ep: EpState, sandbox: NetnsRef): Promise<void>;
}

/** The states of the siblings made by driver `name` (a driver's view of its own kind). */
export function siblingStates<S>(siblings: readonly SiblingNetwork[], name: DriverName): S[] {
  return siblings.flatMap((n) => (n.driver === name ? [n.state as S] : []));
}
