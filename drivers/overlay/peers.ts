// Keeps each overlay network's forwarding state in the kernel equal to the cluster store.
//
// Level-triggered: every watch event (and every reconnect, and the periodic pass) re-reads the
// network's endpoints and members from the store and diffs them against what the kernel has
// now, so a missed event, a restart or a hand-deleted entry is repaired by the next pass.
// When the store cannot be read the kernel is left as it is: containers keep talking while
// etcd is away.
//
// Per remote endpoint: an FDB entry on the VXLAN device (MAC -> remote VTEP), a static FDB entry on
// the bridge (MAC -> VXLAN port, so the bridge never floods for it), and ARP/NDP entries on the
// VXLAN device that its proxy answers from. Per remote member: an all-zeros FDB entry, which
// replicates broadcast to that host only.

import { NUD } from '../../kernel/nl/constants.js';
import type { NeighInfo } from '../../kernel/types.js';
import type { DriverContext } from '../driver.js';
import type { ClusterEndpoint, ClusterState } from './cluster.js';
import { OVERLAY_VXLAN, type OverlayNetworkState } from './index.js';
import { overlayHandle } from './netns.js';

const FLOOD_MAC = '00:00:00:00:00:00';

export type RemoteEndpointsListener = (networkId: string, remote: ClusterEndpoint[]) => void;

interface Tracked {
  state: OverlayNetworkState;
  unwatch: () => void;
  running?: Promise<void>;
  again: boolean;
}

export interface SyncStats {
  added: number;
  removed: number;
}

export class OverlayPeers {
  private readonly nets = new Map<string, Tracked>();

  constructor(
    private readonly ctx: DriverContext,
    private readonly cluster: ClusterState,
    private readonly onRemote: RemoteEndpointsListener = () => undefined,
  ) {}

  /** Starts following a network (creation, or daemon start); the first sync runs at once. */
  track(networkId: string, state: OverlayNetworkState): Promise<void> {
    this.untrack(networkId);
    const t: Tracked = { state, again: false, unwatch: () => undefined };
    this.nets.set(networkId, t);
    t.unwatch = this.cluster.watch(state.cluster, () => void this.kick(networkId));
    return this.kick(networkId);
  }

  untrack(networkId: string): void {
    const t = this.nets.get(networkId);
    if (!t) return;
    t.unwatch();
    this.nets.delete(networkId);
    this.onRemote(networkId, []);
  }

  async syncAll(): Promise<void> {
    await Promise.all([...this.nets.keys()].map((id) => this.kick(id)));
  }

  close(): void {
    for (const id of [...this.nets.keys()]) this.untrack(id);
  }

  /** Coalesces: while a pass runs, any number of events cause exactly one more pass. */
  kick(networkId: string): Promise<void> {
    const t = this.nets.get(networkId);
    if (!t) return Promise.resolve();
    if (t.running) {
      t.again = true;
      return t.running;
    }
    t.running = (async () => {
      do {
        t.again = false;
        try {
          await this.sync(networkId, t.state);
        } catch (e) {
          this.ctx.log.warn({ network: t.state.cluster, err: (e as Error).message }, 'overlay sync failed; kernel entries left as they are');
        }
      } while (t.again && this.nets.get(networkId) === t);
    })().finally(() => {
      t.running = undefined;
    });
    return t.running;
  }

  /** One diff pass for one network. */
  async sync(networkId: string, state: OverlayNetworkState): Promise<SyncStats> {
    const view = await this.cluster.view(state.cluster);
    const me = this.cluster.hostId;
    const remote = view.endpoints.filter((e) => e.host !== me && e.vtep !== this.cluster.vtep);
    const vteps = new Set(view.members.filter((m) => m.host !== me && m.vtep !== this.cluster.vtep).map((m) => m.vtep));
    const h = await overlayHandle(state.netns);
    const dev = { name: OVERLAY_VXLAN };
    const vx = await h.linkFind(dev);
    if (!vx) return { added: 0, removed: 0 }; // deleted under us; the network's own reconcile rebuilds it

    // Desired, as comparable keys.
    const wantSelf = new Map<string, { mac: string; ip: string }>();
    for (const e of remote) wantSelf.set(`${e.mac}|${e.vtep}`, { mac: e.mac, ip: e.vtep });
    for (const v of vteps) wantSelf.set(`${FLOOD_MAC}|${v}`, { mac: FLOOD_MAC, ip: v });
    const wantMaster = new Set(remote.map((e) => e.mac));
    const wantNeigh = new Map<string, { ip: string; mac: string; family: 4 | 6 }>();
    for (const e of remote) {
      if (e.ip4) wantNeigh.set(`${e.ip4}|${e.mac}`, { ip: e.ip4, mac: e.mac, family: 4 });
      if (e.ip6 && state.subnets6.length) wantNeigh.set(`${e.ip6}|${e.mac}`, { ip: e.ip6, mac: e.mac, family: 6 });
    }

    // What the kernel has now.
    const fdb = await h.neighList({ family: 'bridge', link: { index: vx.index } });
    // The bridge reports its entries with NDA_MASTER; the VXLAN device's own carry a destination.
    const haveSelf = fdb.filter((n) => n.master === undefined && n.mac && n.ip);
    // Static bridge entries we made; the port's own (permanent, local) entry is not ours.
    const haveMaster = fdb.filter((n) => n.master !== undefined && n.mac && !(n.state & NUD.PERMANENT) && n.mac !== vx.mac);
    const haveNeigh: NeighInfo[] = [
      ...(await h.neighList({ family: 4, link: { index: vx.index } })),
      ...(state.subnets6.length ? await h.neighList({ family: 6, link: { index: vx.index } }) : []),
    ].filter((n) => n.ip && n.mac && n.state & (NUD.PERMANENT | NUD.NOARP));

    let added = 0;
    let removed = 0;
    // Removals first: a MAC that moved to another host must not briefly point at both.
    for (const n of haveSelf) {
      if (wantSelf.has(`${n.mac}|${n.ip}`)) continue;
      await h.neighDel({ dev, family: 'bridge', mac: n.mac!, ip: n.ip!, fdbFlags: 'self' }).catch(() => undefined);
      removed++;
    }
    for (const n of haveMaster) {
      if (wantMaster.has(n.mac!)) continue;
      await h.neighDel({ dev, family: 'bridge', mac: n.mac!, fdbFlags: 'master' }).catch(() => undefined);
      removed++;
    }
    for (const n of haveNeigh) {
      if (wantNeigh.has(`${n.ip}|${n.mac}`)) continue;
      await h.neighDel({ dev, family: n.family as 4 | 6, ip: n.ip!, mac: n.mac! }).catch(() => undefined);
      removed++;
    }
    const haveSelfKeys = new Set(haveSelf.map((n) => `${n.mac}|${n.ip}`));
    for (const [key, e] of wantSelf) {
      if (haveSelfKeys.has(key)) continue;
      // Append: the all-zeros entry has one destination per remote member.
      // VXLAN takes only permanent (or reachable) entries; on a bridge, permanent would mean "local".
      await h.neighAppend({ dev, family: 'bridge', mac: e.mac, ip: e.ip, fdbFlags: 'self', state: 'permanent' });
      added++;
    }
    const haveMasterMacs = new Set(haveMaster.map((n) => n.mac));
    for (const mac of wantMaster) {
      if (haveMasterMacs.has(mac)) continue;
      await h.neighSet({ dev, family: 'bridge', mac, fdbFlags: 'master', state: 'noarp' });
      added++;
    }
    const haveNeighKeys = new Set(haveNeigh.map((n) => `${n.ip}|${n.mac}`));
    for (const [key, n] of wantNeigh) {
      if (haveNeighKeys.has(key)) continue;
      await h.neighSet({ dev, family: n.family, ip: n.ip, mac: n.mac, state: 'permanent' });
      added++;
    }
    if (added || removed) this.ctx.log.info({ network: state.cluster, added, removed, remoteEndpoints: remote.length, remoteHosts: vteps.size }, 'overlay entries synced');
    this.onRemote(networkId, remote);
    return { added, removed };
  }
}
