// tsoverlay network options. Unknown keys are refused, as for tsbridge.

import { NetError } from '../../kernel/errors.js';
import { CONTAINER_IFACE_PREFIX, parseIfacePrefix, parseMtu } from '../shared/options.js';

export interface OverlayOptions {
  /** The name that identifies the network on every host (Docker gives each host its own id). */
  clusterNetwork?: string;
  vni?: number;
  mtu?: number;
  /** The container interface's name before Docker's index; "eth" when unset. Host-local. */
  containerIfPrefix?: string;
}

/** Docker's overlay driver's name for the VNI: a list, one per subnet (tsoverlay has one subnet per family and one VNI). */
const DOCKER_VNI_LIST = 'com.docker.network.driver.overlay.vxlanid_list';

export const OVERLAY_OPTION_KEYS = ['tsnet.cluster_network', 'vni', DOCKER_VNI_LIST, 'com.docker.network.driver.mtu', CONTAINER_IFACE_PREFIX] as const;

export const CLUSTER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function parseOverlayOptions(raw: Record<string, string>): OverlayOptions {
  const opts: OverlayOptions = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') throw new NetError('INVALID_ARGUMENT', `option ${key} must be a string`);
    switch (key) {
      case 'tsnet.cluster_network':
        if (!CLUSTER_NAME_RE.test(value)) throw new NetError('INVALID_ARGUMENT', `option ${key} must be 1-63 characters of letters, digits, '_', '.', '-', not ${JSON.stringify(value.slice(0, 80))}`);
        opts.clusterNetwork = value;
        break;
      case 'vni':
      case DOCKER_VNI_LIST: {
        const vni = Number(value);
        if (!/^\d+$/.test(value) || vni < 1 || vni > 0xffffff) throw new NetError('INVALID_ARGUMENT', `option ${key} must be one number from 1 to 16777215, not ${JSON.stringify(value.slice(0, 80))}`);
        if (opts.vni !== undefined && opts.vni !== vni) throw new NetError('INVALID_ARGUMENT', `options vni and ${DOCKER_VNI_LIST} name different VNIs`);
        opts.vni = vni;
        break;
      }
      case 'com.docker.network.driver.mtu':
        opts.mtu = parseMtu(key, value, 1280);
        break;
      case CONTAINER_IFACE_PREFIX:
        opts.containerIfPrefix = parseIfacePrefix(key, value);
        break;
      default:
        throw new NetError('UNSUPPORTED_OPTION', `tsoverlay does not know option ${JSON.stringify(key.slice(0, 80))}; known: ${OVERLAY_OPTION_KEYS.join(', ')}`);
    }
  }
  return opts;
}
