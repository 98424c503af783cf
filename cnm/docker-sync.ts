// What Docker forgot while tsnet was away. Docker only logs a plugin's failure to delete an
// endpoint or a network (after retrying each call for 15 s), so a `docker rm` or `docker network
// rm` made while the daemon is down (an upgrade, a crash) leaves tsnet holding the bridge, the
// veths, the rules, the host ports and the subnet, and the same network cannot be made again
// ("subnet … is already used by tsnet network …"). A periodic sweep compares tsnet's Docker
// networks with Docker's own lists and removes what Docker no longer has:
//   - only networks known to be Docker's, from its list or its create event (networks made through
//     the protocol by something else, tests and benchmarks among them, are not Docker's to forget),
//     never CNI networks;
//   - only what was missing in two sweeps in a row, so nothing being created (an endpoint between
//     CreateEndpoint and Join, a network Docker has not listed yet) is taken for forgotten;
//   - nothing at all while Docker does not answer.

import type { Ipam } from '../ipam/ipam.js';
import type { NetworkService } from '../core/network-service.js';
import { removeNetworkEntirely } from '../core/network-removal.js';
import type { Logger } from '../drivers/driver.js';
import { DEFAULT_DOCKER_SOCKET, dockerGet, type DockerNetwork } from './docker-api.js';

export interface SweepOutcome {
  networks: string[];
  endpoints: string[];
}

export class DockerSync {
  /** Keys ("net:ID", "ep:NET/ID") missing from Docker at the last sweep. */
  private missingBefore = new Set<string>();
  private running: Promise<SweepOutcome> | undefined;

  constructor(
    private readonly svc: NetworkService,
    private readonly ipam: Ipam | undefined,
    private readonly log: Logger,
    private readonly socketPath = DEFAULT_DOCKER_SOCKET,
  ) {}

  /** One sweep; concurrent callers share it. */
  sweep(): Promise<SweepOutcome> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async run(): Promise<SweepOutcome> {
    const out: SweepOutcome = { networks: [], endpoints: [] };
    let listed: DockerNetwork[];
    try {
      listed = await dockerGet<DockerNetwork[]>(this.socketPath, '/networks');
    } catch {
      this.missingBefore.clear(); // two sweeps in a row means two answers in a row
      return out;
    }
    const docker = new Map(listed.map((n) => [n.Id, n]));
    const missing = new Set<string>();
    const forgotten = (key: string): boolean => {
      missing.add(key);
      return this.missingBefore.has(key);
    };
    for (const n of await this.svc.listNetworks()) {
      if (n.id.startsWith('cni-')) continue;
      if (!docker.has(n.id)) {
        if (!n.seenByDocker || !forgotten(`net:${n.id}`)) continue;
        // Docker's ReleasePool failed too: pools go unless a Docker network still uses the subnet.
        const dockerSubnets = listed.flatMap((d) => (d.IPAM?.Config ?? []).flatMap((c) => (c.Subnet ? [c.Subnet] : [])));
        const { endpoints, pools } = await removeNetworkEntirely(this.svc, this.ipam, n, dockerSubnets);
        out.endpoints.push(...endpoints);
        out.networks.push(n.id);
        this.log.warn({ network: n.id, ...(pools.length ? { pools } : {}) }, 'network removed: Docker no longer has it (removed while tsnet was not running)');
        continue;
      }
      if (!n.seenByDocker) await this.svc.markSeenByDocker(n.id);
      const eps = await this.svc.listEndpoints(n.id);
      if (!eps.length) continue;
      let inspected: DockerNetwork;
      try {
        inspected = await dockerGet<DockerNetwork>(this.socketPath, `/networks/${encodeURIComponent(n.id)}`);
      } catch {
        for (const ep of eps) if (this.missingBefore.has(`ep:${n.id}/${ep.id}`)) missing.add(`ep:${n.id}/${ep.id}`);
        continue;
      }
      const live = new Set(Object.values(inspected.Containers ?? {}).map((c) => c.EndpointID));
      for (const ep of eps) {
        if (live.has(ep.id) || !forgotten(`ep:${n.id}/${ep.id}`)) continue;
        await this.svc.deleteEndpoint(n.id, ep.id);
        out.endpoints.push(ep.id);
        this.log.warn({ network: n.id, endpoint: ep.id }, 'endpoint removed: Docker no longer has it (its container went while tsnet was not running)');
      }
    }
    this.missingBefore = missing;
    return out;
  }
}
