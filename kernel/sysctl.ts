// Per-namespace sysctls. Keys are given as path segments so interface names with dots (eth0.5)
// stay unambiguous: sysctlSet(ns, ['net', 'ipv4', 'conf', 'eth0.5', 'forwarding'], '1').

import { KernelError } from './errors.js';
import { native, isNativeError } from './native.js';
import { validateIfName } from './names.js';
import type { NetnsRef } from './types.js';

export type SysctlKey = string | readonly string[];

export function procPath(key: SysctlKey): string {
  const parts = typeof key === 'string' ? key.split('.') : [...key];
  for (const p of parts) {
    if (!p || p === '.' || p === '..' || p.includes('/') || /[\0\n]/.test(p)) throw new TypeError(`bad sysctl key ${JSON.stringify(key)}`);
  }
  return `/proc/sys/${parts.join('/')}`;
}

export async function sysctlGet(ns: NetnsRef | undefined, key: SysctlKey): Promise<string> {
  const path = procPath(key);
  try {
    return (await native().sysctl(ns?.path ?? null, path, null)).trim();
  } catch (e) {
    throw isNativeError(e) ? new KernelError(e.errno, 'sysctl read', path) : e;
  }
}

export async function sysctlSet(ns: NetnsRef | undefined, key: SysctlKey, value: string): Promise<void> {
  const path = procPath(key);
  try {
    await native().sysctl(ns?.path ?? null, path, value);
  } catch (e) {
    throw isNativeError(e) ? new KernelError(e.errno, 'sysctl write', path) : e;
  }
}

/** Interface-scoped key, checking the name first: conf('ipv6', 'eth0', 'accept_dad'). */
export function ifaceSysctl(family: 'ipv4' | 'ipv6', ifName: string, leaf: string): string[] {
  validateIfName(ifName);
  return ['net', family, 'conf', ifName, leaf];
}
