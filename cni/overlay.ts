// The tsoverlay CNI plugin: the conflist's `name` is the cluster network, the subnet comes from
// `ipam` (type tsipam: subnet, gateway) or top-level `subnet`/`gateway`; addresses are allocated
// cluster-wide by the driver. A network made here goes with its host's last attachment.
//
//   {"cniVersion":"1.1.0","name":"blue","type":"tsoverlay",
//    "ipam":{"type":"tsipam","subnet":"10.77.0.0/24","gateway":"10.77.0.1"},"vni":42}

import { join } from 'node:path';
import { isOverlayNetwork, type OverlayNetworkRecord } from '../core/network-service.js';
import { Tx } from '../core/tx.js';
import { applyInSandbox, removeFromSandbox } from '../drivers/shared/sandbox.js';
import { NetlinkHandle } from '../kernel/netlink.js';
import { withFileLock } from '../store/file-lock.js';
import { OVERLAY_VXLAN } from '../drivers/overlay/index.js';
import { overlayHandle } from '../drivers/overlay/netns.js';
import { bigToIp, parseSubnet } from '../ipam/subnet.js';
import { endpointIdFor, takeOutOfSandbox, type CniRuntime } from './commands.js';
import { parseCniArgs, requestedAddress, type BridgeConf } from './conf.js';
import { CNI_CODES, CniError, type CniEnv, type CniResult } from './types.js';

const netId = (name: string): string => `cni-ovl-${name}`;
const lockOf = (rt: CniRuntime, conf: BridgeConf): string => join(rt.stateDir, `cni-ovl-${conf.name}.lock`);

async function findNetwork(rt: CniRuntime, name: string): Promise<OverlayNetworkRecord | undefined> {
  // One made through Docker on this host with the same cluster name is the same network.
  const all = (await rt.networks.listNetworks()).filter(isOverlayNetwork);
  return all.find((n) => n.id === netId(name)) ?? all.find((n) => n.state.cluster === name);
}

function subnetsOf(conf: BridgeConf): { v4: { subnet: string; gateway: string }; v6?: { subnet: string; gateway?: string } } {
  const raw = conf.raw;
  const list = conf.ipam?.type === 'tsipam' ? conf.ipam.subnets : typeof raw.subnet === 'string' ? [{ subnet: raw.subnet, ...(typeof raw.gateway === 'string' ? { gateway: raw.gateway } : {}) }] : [];
  const v4 = list.find((s) => !s.subnet.includes(':'));
  const v6 = list.find((s) => s.subnet.includes(':'));
  if (!v4) throw new CniError(CNI_CODES.INVALID_CONFIG, 'tsoverlay needs an IPv4 subnet (ipam type tsipam with "subnet", or a top-level "subnet")');
  const s = parseSubnet(v4.subnet);
  // The gateway defaults to the first address, the same on every host.
  const gw = v4.gateway ?? bigToIp(4, s.first + 1n);
  return { v4: { subnet: s.cidr, gateway: `${gw.split('/')[0]}/${s.prefixLen}` }, ...(v6 ? { v6: { subnet: parseSubnet(v6.subnet).cidr, ...(v6.gateway ? { gateway: `${v6.gateway.split('/')[0]}/${v6.subnet.split('/')[1]}` } : {}) } } : {}) };
}

export async function overlayAdd(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<CniResult> {
  const args = parseCniArgs(env.args);
  const epId = endpointIdFor(env.containerId, env.ifName);
  const { v4, v6 } = subnetsOf(conf);
  const vni = conf.raw.vni;
  if (vni !== undefined && (typeof vni !== 'number' || !Number.isInteger(vni))) throw new CniError(CNI_CODES.INVALID_CONFIG, 'vni must be an integer');
  return Tx.run((m, f) => rt.log.warn(f, m), async (tx) => {
    const { net, ep } = await withFileLock(lockOf(rt, conf), async () => {
      let net = await findNetwork(rt, conf.name);
      if (!net) {
        await rt.networks.createNetwork({
          id: netId(conf.name), driver: 'tsoverlay',
          ipv4: [v4], ipv6: v6 ? [v6] : [], enableIPv6: !!v6, internal: false,
          rawOptions: {
            'tsnet.cluster_network': conf.name,
            ...(vni !== undefined ? { vni: String(vni) } : {}),
            ...(conf.mtu ? { 'com.docker.network.driver.mtu': String(conf.mtu) } : {}),
          },
        });
        tx.onUndo('drop the network if unused', () => dropIfUnused(rt, conf));
        net = (await findNetwork(rt, conf.name))!;
      }
      if (await rt.networks.getEndpoint(net.id, epId)) throw new CniError(CNI_CODES.INVALID_CONFIG, `container ${env.containerId} already has ${env.ifName} on network ${conf.name}; DEL it first`);
      {
        await using c = await NetlinkHandle.open({ path: env.netns }).catch((e) => {
          throw new CniError(CNI_CODES.INVALID_ENV, `CNI_NETNS ${env.netns} cannot be opened: ${(e as Error).message}`);
        });
        if (await c.linkFind({ name: env.ifName })) throw new CniError(CNI_CODES.INVALID_CONFIG, `interface ${env.ifName} already exists in ${env.netns}`);
      }
      const want4 = requestedAddress(conf, args, v4.subnet);
      const want6 = v6 ? requestedAddress(conf, args, v6.subnet) : undefined;
      const ep = await rt.networks.createEndpoint({
        id: epId, networkId: net.id,
        ...(want4 ? { address4: want4 } : {}), ...(want6 ? { address6: want6 } : {}),
        ...(conf.mac ?? args.MAC ? { mac: (conf.mac ?? args.MAC)! } : {}),
        sandbox: { netns: { path: env.netns }, ifName: env.ifName },
      });
      tx.onUndo('delete endpoint', () => rt.networks.deleteEndpoint(net!.id, epId));
      return { net, ep };
    });
    const plan = await rt.networks.join(net.id, epId, env.netns);
    const addresses = [ep.spec.address4, ep.spec.address6].filter((a): a is string => !!a);
    const routes = conf.ipam?.routes ?? [];
    const inside = await applyInSandbox(rt.host, { path: env.netns }, {
      ifName: env.ifName, addresses,
      ...(plan.gateway4 ? { gateway4: plan.gateway4 } : {}), ...(plan.gateway6 ? { gateway6: plan.gateway6 } : {}),
      defaultRoute: true, routes,
    });
    tx.onUndo('remove interface', () => removeFromSandbox({ path: env.netns }, env.ifName));
    if (conf.portMappings.length) await rt.networks.programExternal(net.id, epId, conf.portMappings);
    const names = [...new Set([args.K8S_POD_NAME, ...conf.aliases, env.containerId.slice(0, 12)].filter((n): n is string => !!n))];
    await rt.networks.setEndpointNames(net.id, epId, names);
    const gw = (ip: string): string | undefined => (ip.includes(':') ? plan.gateway6 : plan.gateway4);
    return {
      cniVersion: conf.cniVersion,
      interfaces: [
        { name: net.state.bridge, mac: net.state.gatewayMac },
        { name: env.ifName, ...(inside.mac ? { mac: inside.mac } : {}), sandbox: env.netns, mtu: inside.mtu },
      ],
      ips: addresses.map((address) => ({ address, ...(gw(address) ? { gateway: gw(address)! } : {}), interface: 1 })),
      routes: [
        ...(plan.gateway4 ? [{ dst: '0.0.0.0/0', gw: plan.gateway4 }] : []),
        ...(plan.gateway6 ? [{ dst: '::/0', gw: plan.gateway6 }] : []),
        ...routes,
      ],
      dns: conf.dns ?? (plan.gateway4 ? { nameservers: [plan.gateway4], search: [rt.dnsDomain] } : {}),
    };
  });
}

async function dropIfUnused(rt: CniRuntime, conf: BridgeConf): Promise<void> {
  await withFileLock(lockOf(rt, conf), async () => {
    const net = await findNetwork(rt, conf.name);
    if (!net || net.id !== netId(conf.name) || (await rt.networks.listEndpoints(net.id)).length) return;
    await rt.networks.deleteNetwork(net.id);
  });
}

/** Idempotent. */
export async function overlayDel(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<void> {
  const epId = endpointIdFor(env.containerId, env.ifName);
  const net = await findNetwork(rt, conf.name);
  await takeOutOfSandbox(rt, env, net?.id, epId);
  if (net) {
    await rt.networks.revokeExternal(net.id, epId);
    await rt.networks.deleteEndpoint(net.id, epId);
  }
  await dropIfUnused(rt, conf);
}

export async function overlayCheck(rt: CniRuntime, env: CniEnv, conf: BridgeConf): Promise<void> {
  const epId = endpointIdFor(env.containerId, env.ifName);
  const net = await findNetwork(rt, conf.name);
  const ep = net && (await rt.networks.getEndpoint(net.id, epId));
  if (!net || !ep) throw new CniError(CNI_CODES.UNKNOWN_CONTAINER, `no attachment of ${env.containerId}/${env.ifName} on ${conf.name}`);
  await using c = await NetlinkHandle.open({ path: env.netns }).catch(() => {
    throw new CniError(CNI_CODES.INTERNAL, `netns ${env.netns} is not there`);
  });
  const have = (await c.addrList({ link: { name: env.ifName } })).map((a) => a.cidr);
  for (const want of [ep.spec.address4, ep.spec.address6].filter((x): x is string => !!x)) {
    if (!have.includes(want)) throw new CniError(CNI_CODES.INTERNAL, `address ${want} is missing on ${env.ifName} (has ${have.join(', ') || 'none'})`);
  }
  const ovl = await overlayHandle(net.state.netns).catch(() => undefined);
  if (!ovl || !(await ovl.linkFind({ name: OVERLAY_VXLAN }))) throw new CniError(CNI_CODES.INTERNAL, `VXLAN device of ${conf.name} is missing (namespace ${net.state.netns})`);
}

/** Removes attachments the runtime no longer lists. */
export async function overlayGc(rt: CniRuntime, conf: BridgeConf): Promise<void> {
  const valid = new Set((conf.validAttachments ?? []).map((a) => endpointIdFor(a.containerID, a.ifname)));
  const net = await findNetwork(rt, conf.name);
  if (!net) return;
  for (const ep of await rt.networks.listEndpoints(net.id)) {
    if (valid.has(ep.id) || !ep.id.match(/^[0-9a-f]{64}$/)) continue;
    await rt.networks.revokeExternal(net.id, ep.id);
    await rt.networks.deleteEndpoint(net.id, ep.id);
  }
  await dropIfUnused(rt, conf);
}
