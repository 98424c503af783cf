// tsbridge network options, with Docker's names where Docker has them. Unknown keys are refused:
// a typo that is silently ignored is worse than an error.

import { NetError } from '../../kernel/errors.js';
import { CONTAINER_IFACE_PREFIX, parseIfacePrefix, parseIpv4Option, parseMtu } from '../shared/options.js';
import { validateIfName } from '../../kernel/names.js';

export interface BridgeOptions {
  bridgeName?: string;
  icc: boolean;
  masquerade: boolean;
  hostBindingIpv4?: string;
  mtu?: number;
  /** The container interface's name before its index (Docker's DstPrefix); "eth" when unset. */
  containerIfPrefix?: string;
  /** The source address of IPv4 traffic leaving the host (SNAT), instead of masquerade's choice. */
  hostIpv4?: string;
}

const BOOL = (key: string, v: string): boolean => {
  if (/^(true|1|yes|on)$/i.test(v)) return true;
  if (/^(false|0|no|off)$/i.test(v)) return false;
  throw new NetError('INVALID_ARGUMENT', `option ${key} must be true or false, not ${JSON.stringify(v)}`);
};

export const BRIDGE_OPTION_KEYS = [
  'com.docker.network.bridge.name',
  'com.docker.network.bridge.enable_icc',
  'com.docker.network.bridge.enable_ip_masquerade',
  'com.docker.network.bridge.host_binding_ipv4',
  'com.docker.network.driver.mtu',
  CONTAINER_IFACE_PREFIX,
  'com.docker.network.host_ipv4',
  'com.docker.network.enable_ipv6',
] as const;

export function parseBridgeOptions(raw: Record<string, string>): BridgeOptions {
  const opts: BridgeOptions = { icc: true, masquerade: true };
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') throw new NetError('INVALID_ARGUMENT', `option ${key} must be a string`);
    switch (key) {
      case 'com.docker.network.bridge.name':
        try {
          validateIfName(value);
        } catch (e) {
          throw new NetError('INVALID_ARGUMENT', `bad bridge name: ${(e as Error).message}`);
        }
        opts.bridgeName = value;
        break;
      case 'com.docker.network.bridge.enable_icc':
        opts.icc = BOOL(key, value);
        break;
      case 'com.docker.network.bridge.enable_ip_masquerade':
        opts.masquerade = BOOL(key, value);
        break;
      case 'com.docker.network.bridge.host_binding_ipv4':
        opts.hostBindingIpv4 = parseIpv4Option(key, value);
        break;
      case 'com.docker.network.driver.mtu':
        opts.mtu = parseMtu(key, value);
        break;
      case CONTAINER_IFACE_PREFIX:
        opts.containerIfPrefix = parseIfacePrefix(key, value);
        break;
      case 'com.docker.network.enable_ipv6':
        // Docker's bridge driver takes it as a driver option and, in 20.10, nothing comes of it:
        // --ipv6 decides (checked: a v6 subnet with only this option gives containers no IPv6).
        // Taken and checked the same way, so a network definition moves over unchanged.
        BOOL(key, value);
        break;
      case 'com.docker.network.host_ipv4':
        opts.hostIpv4 = parseIpv4Option(key, value);
        break;
      default:
        throw new NetError('UNSUPPORTED_OPTION', `tsbridge does not know option ${JSON.stringify(key)}; known: ${BRIDGE_OPTION_KEYS.join(', ')}`);
    }
  }
  return opts;
}
