// Option parsing shared by drivers.

import { isIPv4 } from 'node:net';
import { NetError } from '../../kernel/errors.js';
import { validateIfName } from '../../kernel/names.js';

/** An MTU option: an integer from `min` (68 for IPv4 links; 1280 where IPv6 may run) to 65535. */
export function parseMtu(key: string, value: string, min = 68): number {
  const mtu = Number(value);
  if (!/^\d+$/.test(value) || mtu < min || mtu > 65535) throw new NetError('INVALID_ARGUMENT', `option ${key} must be an MTU between ${min} and 65535`);
  return mtu;
}

/** Docker's option for the container interface's name: the prefix before its index ("eth" → eth0). */
export const CONTAINER_IFACE_PREFIX = 'com.docker.network.container_iface_prefix';

/**
 * A container interface name prefix: what Docker puts before the index it picks, so the whole
 * name must still be a valid interface name with three digits after it.
 */
export function parseIfacePrefix(key: string, value: string): string {
  try {
    if (!value || value.length > 12) throw new Error('it must be 1 to 12 characters');
    validateIfName(`${value}0`);
  } catch (e) {
    throw new NetError('INVALID_ARGUMENT', `option ${key}: ${JSON.stringify(value.slice(0, 40))} cannot start an interface name (${(e as Error).message})`);
  }
  return value;
}

/**
 * An option that is an IPv4 address and nothing else: it goes into a rule or a binding. isIPv4
 * refuses "1.2.3.4/8" and 999.1.1.1, as Docker's net.ParseIP does.
 */
export function parseIpv4Option(key: string, value: string): string {
  if (!isIPv4(value)) throw new NetError('INVALID_ARGUMENT', `option ${key} must be an IPv4 address, not ${JSON.stringify(value.slice(0, 80))}`);
  return value;
}
