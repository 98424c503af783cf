// Checks on Docker's request bodies: the fields we rely on, with errors that name the field.

import { isIP } from 'node:net';
import { NetError } from '../kernel/errors.js';

export function str(body: Record<string, any>, key: string, opts: { optional?: boolean } = {}): string {
  const v = body[key];
  if (v === undefined || v === null || v === '') {
    if (opts.optional) return '';
    throw new NetError('INVALID_ARGUMENT', `missing ${key}`);
  }
  if (typeof v !== 'string') throw new NetError('INVALID_ARGUMENT', `${key} must be a string`);
  return v;
}

export function id(body: Record<string, any>, key: string): string {
  const v = str(body, key);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(v)) throw new NetError('INVALID_ARGUMENT', `${key} is not a valid id`);
  return v;
}

export function obj(body: Record<string, any>, key: string): Record<string, any> {
  const v = body[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new NetError('INVALID_ARGUMENT', `${key} must be an object`);
  return v;
}

export function arr(body: Record<string, any>, key: string): Array<Record<string, any>> {
  const v = body[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new NetError('INVALID_ARGUMENT', `${key} must be an array`);
  // Found by fuzzing: [null] reached field access. Every element must itself be an object.
  v.forEach((e, i) => {
    if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new NetError('INVALID_ARGUMENT', `${key}[${i}] must be an object`);
  });
  return v;
}

/**
 * An "address/len" field. These strings end up in netlink messages and iptables rules, so
 * anything but an address and a prefix length is refused here, at the edge.
 */
export function cidr(body: Record<string, any>, key: string, opts: { optional?: boolean } = {}): string {
  const v = str(body, key, opts);
  if (!v) return v;
  const [ip, len, ...rest] = v.split('/');
  const family = isIP(ip ?? '');
  const max = family === 4 ? 32 : 128;
  if (!family || rest.length || len === undefined || !/^\d{1,3}$/.test(len) || Number(len) > max) {
    throw new NetError('INVALID_ARGUMENT', `${key} must be an address with a prefix length (like 10.0.0.1/24), not ${JSON.stringify(v.slice(0, 80))}`);
  }
  return v;
}

export function mac(body: Record<string, any>, key: string): string {
  const v = str(body, key, { optional: true });
  if (v && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v)) throw new NetError('INVALID_ARGUMENT', `${key} must be a MAC address, not ${JSON.stringify(v.slice(0, 80))}`);
  return v;
}
