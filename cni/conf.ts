// The tsbridge CNI configuration, parsed once into typed form. Unknown keys are passed over, as
// runtimes add their own (capabilities, cni.dev/…); known keys of the wrong type are errors.

import { createHash } from 'node:crypto';
import { validateIfName } from '../kernel/names.js';
import { parseSubnet } from '../ipam/subnet.js';
import { PROTO_BY_NUMBER, canonicalIp, isAnyAddress, type PortBindingRequest, type PortProto } from '../drivers/shared/ports.js';
import { CNI_CODES, CniError, type CniResult } from './types.js';
import { checkVersion } from './version.js';

export interface IpamConf {
  type: string;
  /** tsipam: subnets to allocate from (one per family), from `subnet` or `ranges`. */
  subnets: Array<{ subnet: string; gateway?: string }>;
  routes: Array<{ dst: string; gw?: string }>;
  raw: Record<string, unknown>;
}

export interface BridgeConf {
  cniVersion: string;
  name: string;
  type: string;
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  ipMasq: boolean;
  mtu?: number;
  hairpinMode: boolean;
  ipam?: IpamConf;
  dns?: CniResult['dns'];
  portMappings: PortBindingRequest[];
  staticIps: string[];
  mac?: string;
  aliases: string[];
  prevResult?: CniResult;
  validAttachments?: Array<{ containerID: string; ifname: string }>;
  raw: Record<string, unknown>;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

const bad = (msg: string): CniError => new CniError(CNI_CODES.INVALID_CONFIG, msg);

function bool(o: Record<string, unknown>, k: string, dflt = false): boolean {
  const v = o[k];
  if (v === undefined) return dflt;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  throw bad(`${k} must be a boolean`);
}

/** Keys compared case-insensitively: containerd sends Go field names (HostPort), Podman lower-case. */
function ci(o: Record<string, unknown>, key: string): unknown {
  const k = Object.keys(o).find((x) => x.toLowerCase() === key.toLowerCase());
  return k === undefined ? undefined : o[k];
}

export function defaultBridgeName(network: string): string {
  return `tsb-${createHash('sha256').update(network).digest('hex').slice(0, 11)}`;
}

function parsePortMappings(v: unknown): PortBindingRequest[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad('runtimeConfig.portMappings must be an array');
  return v.map((m: Record<string, unknown>) => {
    const hostPort = Number(ci(m, 'hostPort'));
    const containerPort = Number(ci(m, 'containerPort'));
    const protoRaw = String(ci(m, 'protocol') ?? 'tcp').toLowerCase();
    const proto = (Object.values(PROTO_BY_NUMBER) as string[]).includes(protoRaw) ? (protoRaw as PortProto) : undefined;
    if (!proto) throw bad(`unsupported port protocol ${JSON.stringify(protoRaw)}`);
    if (!Number.isInteger(containerPort) || containerPort < 1 || containerPort > 65535) throw bad(`bad containerPort ${JSON.stringify(ci(m, 'containerPort'))}`);
    if (!Number.isInteger(hostPort) || hostPort < 0 || hostPort > 65535) throw bad(`bad hostPort ${JSON.stringify(ci(m, 'hostPort'))}`);
    const given = ci(m, 'hostIP');
    const hostIp = given === undefined || given === '' ? undefined : canonicalIp(String(given));
    if (given !== undefined && given !== '' && !hostIp) throw bad(`bad hostIP ${JSON.stringify(String(given).slice(0, 80))}`);
    return { proto, containerPort, hostPort, hostPortEnd: hostPort, ...(hostIp === undefined || isAnyAddress(hostIp) ? {} : { hostIp }) };
  });
}

/**
 * `runtimeConfig.ipRanges` (the `ipRanges` capability): range sets the runtime adds, placed before
 * the configured ones, as host-local does; for tsipam only.
 */
function parseIpam(v: unknown, runtimeRanges?: unknown): IpamConf | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw bad('ipam must be an object');
  const o = v as Record<string, unknown>;
  if (Object.keys(o).length === 0) return undefined; // L2 only
  if (typeof o.type !== 'string' || !o.type) throw bad('ipam.type is required');
  const subnets: IpamConf['subnets'] = [];
  const add = (s: unknown, gw: unknown): void => {
    if (typeof s !== 'string') throw bad('ipam subnet must be a CIDR string');
    try {
      const cidr = parseSubnet(s, true).cidr;
      // The runtime's range and the configured one may well be the same: one address per subnet.
      if (subnets.some((x) => x.subnet === cidr)) return;
      subnets.push({ subnet: cidr, ...(typeof gw === 'string' ? { gateway: gw } : {}) });
    } catch (e) {
      throw bad(`ipam subnet ${s}: ${(e as Error).message}`);
    }
  };
  if (o.type === 'tsipam') {
    const addSets = (sets: unknown, what: string): void => {
      if (sets === undefined || sets === null) return;
      if (!Array.isArray(sets)) throw bad(`${what} must be a list of range lists`);
      for (const set of sets) {
        if (!Array.isArray(set) || !set[0]) throw bad(`${what} must be a list of range lists`);
        const r = set[0] as Record<string, unknown>;
        if (r.rangeStart !== undefined || r.rangeEnd !== undefined) throw new CniError(CNI_CODES.UNSUPPORTED_FIELD, 'tsipam does not support rangeStart/rangeEnd; use one subnet per range');
        add(r.subnet, r.gateway);
      }
    };
    addSets(runtimeRanges, 'runtimeConfig.ipRanges');
    if (o.subnet !== undefined) add(o.subnet, o.gateway);
    addSets(o.ranges, 'ipam.ranges');
  }
  const routes = Array.isArray(o.routes) ? (o.routes as Array<{ dst: string; gw?: string }>) : [];
  return { type: o.type, subnets, routes, raw: o };
}

export function parseConf(raw: unknown): BridgeConf {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CniError(CNI_CODES.DECODE_FAILURE, 'network configuration must be a JSON object');
  const o = raw as Record<string, unknown>;
  const cniVersion = checkVersion(o.cniVersion ?? '0.1.0');
  if (typeof o.name !== 'string' || !NAME_RE.test(o.name)) throw bad(`network name ${JSON.stringify(o.name)} is invalid`);
  if (typeof o.type !== 'string') throw bad('type is required');
  const bridge = o.bridge === undefined ? defaultBridgeName(o.name) : String(o.bridge);
  try {
    validateIfName(bridge);
  } catch (e) {
    throw bad(`bridge: ${(e as Error).message}`);
  }
  const mtu = o.mtu === undefined ? undefined : Number(o.mtu);
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) throw bad('mtu must be between 68 and 65535');
  const rc = (typeof o.runtimeConfig === 'object' && o.runtimeConfig) ? (o.runtimeConfig as Record<string, unknown>) : {};
  const argsCni = ((o.args as Record<string, unknown> | undefined)?.cni ?? {}) as Record<string, unknown>;
  const ips = [...((ci(rc, 'ips') as string[] | undefined) ?? []), ...((argsCni.ips as string[] | undefined) ?? [])];
  const aliasesRaw = ci(rc, 'aliases');
  // Podman sends {"<network>": [...]}; others a plain list.
  const aliases = Array.isArray(aliasesRaw)
    ? aliasesRaw.map(String)
    : aliasesRaw && typeof aliasesRaw === 'object'
      ? ((aliasesRaw as Record<string, unknown>)[o.name] as string[] | undefined ?? []).map(String)
      : [];
  const mac = (ci(rc, 'mac') as string | undefined) ?? (argsCni.mac as string | undefined);
  const isDefaultGateway = bool(o, 'isDefaultGateway');
  const ipam = parseIpam(o.ipam, ci(rc, 'ipRanges'));
  const valid = (o['cni.dev/valid-attachments'] ?? o['cni.dev/attachments']) as BridgeConf['validAttachments'];
  return {
    cniVersion,
    name: o.name,
    type: o.type,
    bridge,
    isGateway: bool(o, 'isGateway') || isDefaultGateway,
    isDefaultGateway,
    ipMasq: bool(o, 'ipMasq'),
    ...(mtu !== undefined ? { mtu } : {}),
    hairpinMode: bool(o, 'hairpinMode'),
    ...(ipam ? { ipam } : {}),
    ...(o.dns && typeof o.dns === 'object' ? { dns: o.dns as CniResult['dns'] } : {}),
    portMappings: parsePortMappings(ci(rc, 'portMappings')),
    staticIps: ips,
    ...(mac ? { mac } : {}),
    aliases,
    ...(o.prevResult && typeof o.prevResult === 'object' ? { prevResult: o.prevResult as CniResult } : {}),
    ...(Array.isArray(valid) ? { validAttachments: valid } : {}),
    raw: o,
  };
}

/** CNI_ARGS "K=V;K2=V2"; unknown keys are an error unless IgnoreUnknown is set (as libcni does). */
export function parseCniArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const pair of text.split(';')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_CODES.INVALID_ENV, `CNI_ARGS: bad pair ${JSON.stringify(pair)}`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const known = new Set(['IP', 'MAC', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID', 'IgnoreUnknown']);
  const ignore = /^(1|true)$/i.test(out.IgnoreUnknown ?? '');
  const unknown = Object.keys(out).filter((k) => !known.has(k));
  if (unknown.length && !ignore) throw new CniError(CNI_CODES.INVALID_ENV, `CNI_ARGS: unknown key(s) ${unknown.join(', ')} (set IgnoreUnknown=1 to allow)`);
  return out;
}

/**
 * The address asked for in the family of `subnet`: runtimeConfig.ips and args.cni.ips, then
 * CNI_ARGS IP (comma-separated). Undefined means "any free address".
 */
export function requestedAddress(conf: BridgeConf, cniArgs: Record<string, string>, subnet: string): string | undefined {
  const wanted = [...conf.staticIps, ...(cniArgs.IP ? cniArgs.IP.split(',') : [])];
  return wanted.find((w) => w.includes(':') === subnet.includes(':'))?.split('/')[0];
}
