// NetlinkHandle: a NETLINK_ROUTE socket bound to one network namespace when opened, with typed
// operations on links, addresses, routes and neighbours. Requests on one handle are serialised (one
// socket, one outstanding exchange); use one handle per namespace for parallelism.

import { closeSync, openSync } from 'node:fs';
import { InvalidArgumentError, KernelError, isNotFound } from './errors.js';
import { isNativeError, type NativeNetlinkLane } from './native.js';
import { NetlinkSocket } from './netlink-socket.js';
import { validateIfName } from './names.js';
import { procPath, type SysctlKey } from './sysctl.js';
import { attr, type Attr } from './nl/attr.js';
import { AF, IFF, IFLA, NETLINK, NLM_F, RTM, RTM_NAMES } from './nl/constants.js';
import { addrMessage, ifaddrmsg, parseAddr } from './nl/addr.js';
import { bridgePortAttrs, ifinfomsg, linkChangeAttrs, linkCreateAttrs, parseLink } from './nl/link.js';
import type { ReplyMessage } from './nl/message.js';
import { ndmsg, neighFamily, neighMessage, parseNeigh } from './nl/neigh.js';
import { parseCidr } from './nl/ip.js';
import { parseRoute, routeMessage, rtmsg } from './nl/route.js';
import type {
  Address, AddressFamily, AddressOptions, BridgePortFlags, Link, LinkChange, LinkId, LinkSpec, Neigh, NeighInfo,
  NetnsRef, Route, RouteInfo,
} from './types.js';

function describe(id: LinkId): string {
  return 'index' in id ? `link #${id.index}` : `link ${JSON.stringify(id.name)}`;
}

function familyCode(f: AddressFamily | undefined): number {
  return f === 4 ? AF.INET : f === 6 ? AF.INET6 : AF.UNSPEC;
}

/**
 * Opens every namespace path a request names and closes them once the kernel has answered.
 * Opening a namespace file is a few microseconds and never blocks on I/O, so it is done
 * synchronously: two pool round trips per veth would cost more than the open itself.
 */
class NsFds {
  private readonly fds = new Map<string, number>();
  prepare(paths: Array<string | undefined>): void {
    for (const p of paths) {
      if (p && !this.fds.has(p)) {
        try {
          this.fds.set(p, openSync(p, 'r'));
        } catch (e) {
          this.close();
          const err = e as NodeJS.ErrnoException;
          throw new KernelError(err.errno ? -err.errno : 2, 'open netns', p);
        }
      }
    }
  }
  fd = (path: string): number => {
    const fd = this.fds.get(path);
    if (fd === undefined) throw new Error(`namespace ${path} not prepared`);
    return fd;
  };
  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

export class NetlinkHandle extends NetlinkSocket {
  private constructor(netns: NetnsRef | undefined, lane: NativeNetlinkLane, portId: number) {
    super(netns, lane, portId, (type) => RTM_NAMES[type] ?? `type ${type}`);
  }

  /** Opens a handle in `ns`, or in the calling process's own namespace when omitted. */
  static async open(ns?: NetnsRef): Promise<NetlinkHandle> {
    const { lane, portId } = await NetlinkSocket.openLane(ns, NETLINK.ROUTE);
    return new NetlinkHandle(ns, lane, portId);
  }

  /**
   * Writes a sysctl of this handle's namespace, in order with the handle's exchanges: one asked
   * for after a request runs after it, and one asked for before the next request runs before it,
   * without the caller waiting in between (the lane's thread lives in the namespace). Use
   * kernel/sysctl.ts for a sysctl with no netlink work around it.
   */
  sysctlSet(key: SysctlKey, value: string): Promise<void> {
    const path = procPath(key);
    return this.submit(() => this.lane.sysctl(path, value).then(
      () => undefined,
      (e: unknown) => {
        throw isNativeError(e) ? new KernelError(e.errno, 'sysctl write', path) : e;
      },
    ));
  }

  private ack(type: number, flags: number, header: Buffer, attrs: readonly Attr[], target: string, brief = false): Promise<void> {
    return this.exchange(type, flags, header, attrs, target, brief).then(() => undefined);
  }

  private dump(type: number, header: Buffer, target: string): Promise<ReplyMessage[]> {
    return this.exchange(type, NLM_F.DUMP, header, [], target);
  }

  // ---- links -------------------------------------------------------------------------------

  async resolveIndex(id: LinkId): Promise<number> {
    if ('index' in id) return id.index;
    return (await this.linkGet(id)).index;
  }

  async linkGet(id: LinkId): Promise<Link> {
    let header: Buffer;
    const attrs: Attr[] = [];
    if ('index' in id) header = ifinfomsg({ index: id.index });
    else {
      validateIfName(id.name);
      header = ifinfomsg();
      attrs.push({ type: 3 /* IFLA_IFNAME */, value: Buffer.from(`${id.name}\0`) });
    }
    const msgs = await this.exchange(RTM.GETLINK, 0, header, attrs, describe(id), true);
    const m = msgs.find((x) => x.type === RTM.NEWLINK);
    if (!m) throw new KernelError(19 /* ENODEV */, 'RTM_GETLINK', describe(id));
    return parseLink(m.payload);
  }

  /** The link, or undefined when it does not exist. */
  async linkFind(id: LinkId): Promise<Link | undefined> {
    try {
      return await this.linkGet(id);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async linkList(): Promise<Link[]> {
    const msgs = await this.dump(RTM.GETLINK, ifinfomsg(), 'links');
    return msgs.filter((m) => m.type === RTM.NEWLINK).map((m) => parseLink(m.payload));
  }

  /**
   * Creates a link and returns it as the kernel reports it (NLM_F_ECHO): callers learn the new
   * index, and for a veth the peer's index (parentIndex), without another round trip.
   */
  async linkAdd(spec: LinkSpec): Promise<Link | undefined> {
    validateIfName(spec.name);
    if (spec.kind === 'veth') validateIfName(spec.peer.name);
    if (spec.kind === 'vxlan' && (!Number.isInteger(spec.vni) || spec.vni < 0 || spec.vni > 0xffffff)) {
      throw new InvalidArgumentError(`VXLAN id ${spec.vni} is outside 0..16777215`);
    }
    if (spec.kind === 'vlan' && (!Number.isInteger(spec.vlanId) || spec.vlanId < 1 || spec.vlanId > 4094)) {
      throw new InvalidArgumentError(`VLAN id ${spec.vlanId} is outside 1..4094`);
    }
    if (spec.mtu !== undefined && (!Number.isInteger(spec.mtu) || spec.mtu < 68 || spec.mtu > 65535)) {
      throw new InvalidArgumentError(`MTU ${spec.mtu} is outside 68..65535`);
    }
    let parentIndex: number | undefined;
    if (spec.kind === 'macvlan' || spec.kind === 'vlan') parentIndex = await this.resolveIndex(spec.parent);
    if (spec.kind === 'vxlan' && spec.dev) parentIndex = await this.resolveIndex(spec.dev);
    const fds = new NsFds();
    try {
      fds.prepare([spec.netns?.path, spec.kind === 'veth' ? spec.peer.netns?.path : undefined]);
      const attrs = linkCreateAttrs(spec, fds.fd, parentIndex);
      const header = spec.up ? ifinfomsg({ flags: IFF.UP, change: IFF.UP }) : ifinfomsg();
      const msgs = await this.exchange(RTM.NEWLINK, NLM_F.CREATE | NLM_F.EXCL | NLM_F.ECHO, header, attrs, `link ${JSON.stringify(spec.name)}`, true);
      const echoed = msgs.find((m) => m.type === RTM.NEWLINK);
      return echoed ? parseLink(echoed.payload) : undefined;
    } finally {
      fds.close();
    }
  }

  async linkDel(id: LinkId): Promise<void> {
    const header = 'index' in id ? ifinfomsg({ index: id.index }) : ifinfomsg();
    const attrs: Attr[] = [];
    if ('name' in id) {
      validateIfName(id.name);
      attrs.push({ type: 3, value: Buffer.from(`${id.name}\0`) });
    }
    await this.ack(RTM.DELLINK, 0, header, attrs, describe(id));
  }

  /**
   * Deletes every link of a group in one request. The kernel unregisters them as one batch, so a
   * batch pays the RCU grace periods of a link deletion once instead of once per link. Resolves
   * false when the group is empty.
   */
  async linkDelGroup(group: number): Promise<boolean> {
    if (!Number.isInteger(group) || group < 1 || group > 0xffffffff) throw new RangeError(`link group must be 1..2^32-1, got ${group}`);
    try {
      await this.ack(RTM.DELLINK, 0, ifinfomsg(), [attr.u32(IFLA.GROUP, group)], `link group ${group}`);
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  /** Deletes the link if it exists; true when something was deleted. */
  async linkDelIfExists(id: LinkId): Promise<boolean> {
    try {
      await this.linkDel(id);
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  async linkSet(id: LinkId, change: LinkChange): Promise<void> {
    if (change.name !== undefined) validateIfName(change.name);
    // The kernel finds a link by IFLA_IFNAME when the index is 0, saving a lookup; a rename needs
    // the index because IFLA_IFNAME then carries the new name.
    const byName = 'name' in id && change.name === undefined;
    if (byName) validateIfName(id.name);
    const index = byName ? 0 : await this.resolveIndex(id);
    let master: number | null | undefined;
    if (change.master === null) master = null;
    else if (change.master !== undefined) master = await this.resolveIndex(change.master);
    const fds = new NsFds();
    try {
      fds.prepare([change.netns?.path]);
      const attrs = linkChangeAttrs(change, fds.fd, master);
      if (byName) attrs.unshift({ type: 3 /* IFLA_IFNAME */, value: Buffer.from(`${id.name}\0`) });
      const flags = change.up === undefined ? 0 : change.up ? IFF.UP : 0;
      const changeMask = change.up === undefined ? 0 : IFF.UP;
      // Going down, leaving a bridge and moving to another namespace each wait for grace periods.
      const brief = change.up !== false && change.master !== null && change.netns === undefined;
      await this.ack(RTM.NEWLINK, 0, ifinfomsg({ index, flags, change: changeMask }), attrs, describe(id), brief);
    } finally {
      fds.close();
    }
  }

  linkSetUp(id: LinkId): Promise<void> {
    return this.linkSet(id, { up: true });
  }

  /** Bridge-port flags (hairpin, isolated, learning) on a link enslaved to a bridge. */
  async bridgePortSet(id: LinkId, flags: BridgePortFlags): Promise<void> {
    const index = await this.resolveIndex(id);
    await this.ack(RTM.SETLINK, 0, ifinfomsg({ family: AF.BRIDGE, index }), bridgePortAttrs(flags), describe(id), true);
  }

  // ---- addresses ---------------------------------------------------------------------------

  async addrAdd(id: LinkId, cidr: string, opts: AddressOptions = {}): Promise<void> {
    const index = await this.resolveIndex(id);
    const { header, attrs } = this.addrMsg(index, cidr, opts);
    await this.ack(RTM.NEWADDR, NLM_F.CREATE | NLM_F.EXCL, header, attrs, `address ${cidr} on ${describe(id)}`, true);
  }

  async addrReplace(id: LinkId, cidr: string, opts: AddressOptions = {}): Promise<void> {
    const index = await this.resolveIndex(id);
    const { header, attrs } = this.addrMsg(index, cidr, opts);
    await this.ack(RTM.NEWADDR, NLM_F.CREATE | NLM_F.REPLACE, header, attrs, `address ${cidr} on ${describe(id)}`, true);
  }

  async addrDel(id: LinkId, cidr: string): Promise<void> {
    const index = await this.resolveIndex(id);
    const { header, attrs } = this.addrMsg(index, cidr, {});
    await this.ack(RTM.DELADDR, 0, header, attrs, `address ${cidr} on ${describe(id)}`, true);
  }

  async addrList(filter: { link?: LinkId; family?: AddressFamily } = {}): Promise<Address[]> {
    const index = filter.link ? await this.resolveIndex(filter.link) : undefined;
    const msgs = await this.dump(RTM.GETADDR, ifaddrmsg(familyCode(filter.family), 0, 0), 'addresses');
    return msgs
      .filter((m) => m.type === RTM.NEWADDR)
      .map((m) => parseAddr(m.payload))
      .filter((a) => index === undefined || a.index === index);
  }

  private addrMsg(index: number, cidr: string, opts: AddressOptions): { header: Buffer; attrs: Attr[] } {
    try {
      return addrMessage(index, cidr, opts);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  }

  // ---- routes ------------------------------------------------------------------------------

  private async routeMsg(r: Route, forDelete: boolean): Promise<{ header: Buffer; attrs: Attr[] }> {
    const oif = r.dev ? await this.resolveIndex(r.dev) : undefined;
    try {
      return routeMessage(r, oif, forDelete);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  }

  async routeAdd(r: Route): Promise<void> {
    const { header, attrs } = await this.routeMsg(r, false);
    await this.ack(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.EXCL, header, attrs, `route ${r.dst}`, true);
  }

  async routeReplace(r: Route): Promise<void> {
    const { header, attrs } = await this.routeMsg(r, false);
    await this.ack(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.REPLACE, header, attrs, `route ${r.dst}`, true);
  }

  async routeDel(r: Route): Promise<void> {
    const { header, attrs } = await this.routeMsg(r, true);
    await this.ack(RTM.DELROUTE, 0, header, attrs, `route ${r.dst}`, true);
  }

  /** Routes of the main table (or `table`), optionally of one family or output link. */
  async routeList(filter: { family?: AddressFamily; table?: number; link?: LinkId } = {}): Promise<RouteInfo[]> {
    const oif = filter.link ? await this.resolveIndex(filter.link) : undefined;
    const table = filter.table ?? 254;
    const msgs = await this.dump(RTM.GETROUTE, rtmsg({ family: familyCode(filter.family), table: 0 }), 'routes');
    return msgs
      .filter((m) => m.type === RTM.NEWROUTE)
      .map((m) => parseRoute(m.payload))
      .filter((r) => r.table === table && (oif === undefined || r.oif === oif));
  }

  // ---- neighbours and FDB ------------------------------------------------------------------

  private async neighMsg(n: Neigh): Promise<{ header: Buffer; attrs: Attr[]; target: string }> {
    const index = await this.resolveIndex(n.dev);
    if (n.ip) parseCidr(n.ip);
    try {
      return { ...neighMessage(n, index), target: `neighbour ${n.mac}${n.ip ? ` ${n.ip}` : ''} on ${describe(n.dev)}` };
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  }

  /** Adds an entry; EEXIST if one exists (`ip neigh add`). */
  async neighAdd(n: Neigh): Promise<void> {
    const { header, attrs, target } = await this.neighMsg(n);
    await this.ack(RTM.NEWNEIGH, NLM_F.CREATE | NLM_F.EXCL, header, attrs, target, true);
  }

  /** Adds or replaces (`ip neigh replace`, `bridge fdb replace`). */
  async neighSet(n: Neigh): Promise<void> {
    const { header, attrs, target } = await this.neighMsg(n);
    await this.ack(RTM.NEWNEIGH, NLM_F.CREATE | NLM_F.REPLACE, header, attrs, target, true);
  }

  /** Appends (`bridge fdb append`): several remote VTEPs for the same MAC, e.g. the 00:00:… flood entry. */
  async neighAppend(n: Neigh): Promise<void> {
    const { header, attrs, target } = await this.neighMsg(n);
    await this.ack(RTM.NEWNEIGH, NLM_F.CREATE | NLM_F.APPEND, header, attrs, target, true);
  }

  async neighDel(n: Neigh): Promise<void> {
    const { header, attrs, target } = await this.neighMsg(n);
    await this.ack(RTM.DELNEIGH, 0, header, attrs, target, true);
  }

  async neighList(filter: { family: Neigh['family']; link?: LinkId }): Promise<NeighInfo[]> {
    const index = filter.link ? await this.resolveIndex(filter.link) : undefined;
    const msgs = await this.dump(RTM.GETNEIGH, ndmsg(neighFamily(filter), 0), 'neighbours');
    return msgs
      .filter((m) => m.type === RTM.NEWNEIGH)
      .map((m) => parseNeigh(m.payload))
      .filter((n) => index === undefined || n.index === index);
  }
}

export { isNotFound };
