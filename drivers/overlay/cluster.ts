// What tsoverlay needs from the cluster store: the shape of cluster-wide state and the operations
// on it. The etcd implementation lives in store/etcd-cluster.ts; the driver sees only this.

/** A tsoverlay network as every host agrees on it, keyed by its cluster name. */
export interface ClusterNetwork {
  name: string;
  vni: number;
  subnet4?: string;
  /** "ip/len", the same on every host's bridge. */
  gateway4?: string;
  subnet6?: string;
  gateway6?: string;
  /** Set only when the creator asked for one; otherwise each host derives it from its underlay. */
  mtu?: number;
}

/** What a host proposes when it creates (or joins) a cluster network. */
export interface ClusterNetworkRequest {
  name: string;
  /** A fixed VNI (-o vni=); allocated cluster-wide when absent. */
  vni?: number;
  subnet4?: string;
  gateway4?: string;
  subnet6?: string;
  gateway6?: string;
  mtu?: number;
}

/** An endpoint as the other hosts need it: where to send its frames and what to answer for it. */
export interface ClusterEndpoint {
  id: string;
  host: string;
  /** Underlay address of the host's VTEP. */
  vtep: string;
  mac: string;
  ip4?: string;
  ip6?: string;
  /** DNS names (container or pod name, aliases). */
  names: string[];
}

export interface ClusterMember {
  host: string;
  vtep: string;
}

export interface ClusterView {
  endpoints: ClusterEndpoint[];
  members: ClusterMember[];
}

export interface ClusterState {
  /** This host's stable id (kept in the local store across restarts). */
  readonly hostId: string;
  /** This host's underlay address, used as its VTEP. */
  readonly vtep: string;
  /** Creates the network if no host has, else checks that the request matches it. */
  ensureNetwork(req: ClusterNetworkRequest): Promise<ClusterNetwork>;
  /** Takes a specific address for an endpoint of this host; ADDRESS_IN_USE if another owner has it. */
  claimAddress(network: string, ip: string, endpoint: string): Promise<void>;
  /** Takes the lowest free address of the subnet ("ip/len" returned). */
  allocateAddress(network: string, subnet: string, endpoint: string): Promise<string>;
  /** Frees an address this endpoint holds; a missing or foreign one is left alone. */
  releaseAddress(network: string, ip: string, endpoint: string): Promise<void>;
  /** Records this host as a member (under its lease): others then replicate broadcast to it. */
  join(network: string): Promise<void>;
  /** Withdraws the membership; removes the cluster network when no member and no address is left. */
  leave(network: string): Promise<void>;
  publishEndpoint(network: string, ep: Omit<ClusterEndpoint, 'host' | 'vtep'>): Promise<void>;
  withdrawEndpoint(network: string, id: string): Promise<void>;
  /** The endpoints and members of a network, this host's included. */
  view(network: string): Promise<ClusterView>;
  /** What this host holds in a network: address owners and published endpoint ids. */
  owned(network: string): Promise<{ addresses: Array<{ ip: string; endpoint: string }>; endpoints: string[] }>;
  /** Calls back (coalesced) whenever the network's endpoints or members change, or the store reconnects. */
  watch(network: string, changed: () => void): () => void;
}
