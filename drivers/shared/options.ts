// Option parsing shared by drivers.

import { NetError } from '../../kernel/errors.js';

/** An MTU option: an integer from `min` (68 for IPv4 links; 1280 where IPv6 may run) to 65535. */
export function parseMtu(key: string, value: string, min = 68): number {
  const mtu = Number(value);
  if (!/^\d+$/.test(value) || mtu < min || mtu > 65535) throw new NetError('INVALID_ARGUMENT', `option ${key} must be an MTU between ${min} and 65535`);
  return mtu;
}
