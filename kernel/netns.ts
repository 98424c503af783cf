// Named network namespaces (the /run/netns convention shared with iproute2) and NetnsRef helpers.

import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KernelError } from './errors.js';
import { native, isNativeError } from './native.js';
import type { NetnsRef } from './types.js';

export const NETNS_RUN_DIR = '/run/netns';

export function netnsByName(name: string): NetnsRef {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === '.' || name === '..') {
    throw new TypeError(`bad namespace name ${JSON.stringify(name)}`);
  }
  return { path: join(NETNS_RUN_DIR, name) };
}

export function netnsOfPid(pid: number): NetnsRef {
  return { path: `/proc/${pid}/ns/net` };
}

function wrap(e: unknown, op: string, target: string): unknown {
  return isNativeError(e) ? new KernelError(e.errno, op, target) : e;
}

/** Creates /run/netns/NAME (fails with EEXIST if present). */
export async function createNetns(name: string): Promise<NetnsRef> {
  const ref = netnsByName(name); // a bad name is refused before anything is made
  await mkdir(NETNS_RUN_DIR, { recursive: true });
  return createNetnsAt(ref.path);
}

/**
 * Creates a namespace pinned at any path (a file it creates; EEXIST if present): for namespaces
 * that are nobody's business in `ip netns list`, such as the daemon's warm-up rehearsal.
 */
export async function createNetnsAt(path: string): Promise<NetnsRef> {
  try {
    await native().netnsCreate(path);
  } catch (e) {
    throw wrap(e, 'create netns', path);
  }
  return { path };
}

/** Removes a namespace made by createNetns or `ip netns add`; a missing one is fine. */
export async function deleteNetns(ref: NetnsRef | string): Promise<void> {
  const path = typeof ref === 'string' ? netnsByName(ref).path : ref.path;
  try {
    await native().netnsDelete(path);
  } catch (e) {
    throw wrap(e, 'delete netns', path);
  }
}

export async function netnsExists(ref: NetnsRef): Promise<boolean> {
  try {
    await stat(ref.path);
    return true;
  } catch {
    return false;
  }
}

/** Creates a socket inside a namespace (e.g. a DNS listener for a container); the caller owns the fd. */
export async function socketIn(ref: NetnsRef | undefined, family: number, type: number, protocol = 0): Promise<number> {
  try {
    return await native().socketIn(ref?.path ?? null, family, type, protocol);
  } catch (e) {
    throw wrap(e, 'socket in netns', ref?.path ?? 'host');
  }
}
