// Learns container names and aliases from the Docker Engine API (the plugin protocol carries
// none) and hands them to NetworkService for the resolver. Entirely asynchronous: a plugin call
// never waits on Docker, because Docker calls plugins while holding its own locks (and while it
// starts), and waiting on it from a handler deadlocks.

import { request } from 'node:http';
import { CoalescingRunner } from '../core/coalescing-runner.js';
import type { NetworkService } from '../core/network-service.js';
import type { Logger } from '../drivers/driver.js';
import { DEFAULT_DOCKER_SOCKET, dockerGet, type DockerContainer, type DockerNetwork } from './docker-api.js';

export class DockerNames {
  private stopped = false;
  private events?: ReturnType<typeof request>;
  private readonly pending = new Map<string, NodeJS.Timeout>();
  /**
   * One inspection of a network at a time. Two side by side (a burst of connects outlasting the
   * first) let the older one, read before a container's join finished, write its names last:
   * 1 of 40 containers started together kept no aliases.
   */
  private readonly syncs = new Map<string, CoalescingRunner<null, void>>();

  constructor(
    private readonly svc: NetworkService,
    private readonly log: Logger,
    private readonly socketPath = DEFAULT_DOCKER_SOCKET,
  ) {}

  private get<T>(path: string): Promise<T> {
    return dockerGet<T>(this.socketPath, path);
  }

  /** Starts the event stream and a first full pass; returns at once. */
  start(): void {
    this.watch();
    void this.syncAll();
  }

  stop(): void {
    this.stopped = true;
    this.events?.destroy();
    for (const t of this.pending.values()) clearTimeout(t);
  }

  private async syncAll(): Promise<void> {
    for (const n of await this.svc.listNetworks()) this.schedule(n.id);
  }

  /** Coalesces bursts of events for one network into one inspection. */
  private schedule(networkId: string, delayMs = 50): void {
    if (this.stopped || this.pending.has(networkId)) return;
    const t = setTimeout(() => {
      this.pending.delete(networkId);
      let runner = this.syncs.get(networkId);
      if (!runner) {
        runner = new CoalescingRunner<null, void>(() => this.syncNetwork(networkId), () => null);
        this.syncs.set(networkId, runner);
      }
      runner.run(null).catch((e) => {
        this.log.warn({ network: networkId, err: (e as Error).message }, 'could not learn container names from Docker; retrying');
        this.schedule(networkId, 2000);
      });
    }, delayMs);
    t.unref();
    this.pending.set(networkId, t);
  }

  private async syncNetwork(networkId: string): Promise<void> {
    if (!(await this.svc.getNetwork(networkId))) {
      this.syncs.delete(networkId);
      return;
    }
    const net = await this.get<DockerNetwork>(`/networks/${encodeURIComponent(networkId)}`);
    for (const [containerId, c] of Object.entries(net.Containers ?? {})) {
      // Docker lists an endpoint whose join has not finished as "ep-<endpoint id>": no container
      // to read yet. Its connect event, sent once the join is done, brings it here again.
      if (!/^[0-9a-f]{64}$/.test(containerId)) continue;
      // A container that cannot be read (gone meanwhile) keeps the names it has: a name list
      // without its aliases would take them out of DNS.
      const ctr = await this.get<DockerContainer>(`/containers/${encodeURIComponent(containerId)}/json`).catch(() => undefined);
      if (!ctr) continue;
      const aliases = ctr.NetworkSettings?.Networks?.[net.Name]?.Aliases ?? [];
      const hostname = ctr.Config?.Hostname;
      // What Docker's own resolver answers: name, aliases, short id, hostname.
      const names = [c.Name, ...aliases, containerId.slice(0, 12), ...(hostname ? [hostname] : [])].filter(Boolean);
      await this.svc.setEndpointNames(networkId, c.EndpointID, names);
    }
  }

  /** A renamed container: its networks are inspected again (all of ours if it cannot be read). */
  private async renamed(containerId: string): Promise<void> {
    try {
      const ctr = await this.get<DockerContainer>(`/containers/${encodeURIComponent(containerId)}/json`);
      for (const n of Object.values(ctr.NetworkSettings?.Networks ?? {})) if (n.NetworkID) this.schedule(n.NetworkID);
    } catch {
      await this.syncAll();
    }
  }

  private watch(): void {
    if (this.stopped) return;
    // Network connect/disconnect name the network; a container rename names the container, and
    // Docker's own resolver answers the new name at once (libnetwork renames the endpoints). A
    // network create says Docker has the network, so the sweep (docker-sync.ts) may remove it once
    // Docker forgets it; the sweep's own sighting comes up to 30 s later, and a network removed
    // while the daemon was down before then stayed for good.
    const filters = encodeURIComponent(JSON.stringify({ type: ['network', 'container'], event: ['connect', 'disconnect', 'rename', 'create'] }));
    // However the stream stops, once: a dockerd that exits resets the connection, which ends the
    // response with 'error' and 'close' but no 'end' (waiting for 'end' left names unlearnt for good).
    let over = false;
    const again = (): void => {
      if (over) return;
      over = true;
      this.retryWatch();
    };
    const req = request({ socketPath: this.socketPath, path: `/v1.41/events?filters=${filters}`, method: 'GET' }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          try {
            const ev = JSON.parse(line) as { Type?: string; Action?: string; Actor?: { ID?: string } };
            const id = ev.Actor?.ID;
            if (!id) continue;
            if (ev.Type === 'container') {
              if (ev.Action === 'rename') void this.renamed(id);
            } else if (ev.Action === 'create') {
              this.svc.markSeenByDocker(id).catch((e) => this.log.warn({ network: id, err: (e as Error).message }, 'could not record a network as Docker\'s'));
            } else {
              this.schedule(id);
            }
          } catch {
            // a partial or foreign line: ignore
          }
        }
      });
      res.on('error', again);
      res.on('close', again);
    });
    req.on('error', again);
    req.end();
    this.events = req;
  }

  private retryWatch(): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.watch();
      void this.syncAll(); // events may have been missed while disconnected
    }, 2000);
    t.unref();
  }
}
