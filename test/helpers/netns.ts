// Throwaway network namespaces for kernel tests: each test builds its own "host" namespace so the
// real host's interfaces and routes are never touched.

import { afterEach } from 'vitest';
import { run, uniqueName } from './sys.js';

export interface TestNs {
  name: string;
  path: string;
}

const live = new Set<string>();

/** A new namespace with loopback up, removed by nobody: callers track it. */
function addNs(tag: string): TestNs {
  const name = uniqueName(tag);
  run('ip', ['netns', 'add', name]);
  run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return { name, path: `/run/netns/${name}` };
}

export function makeNs(tag = 'n'): TestNs {
  const ns = addNs(tag);
  live.add(ns.name);
  return ns;
}

export function removeNs(ns: TestNs | string): void {
  const name = typeof ns === 'string' ? ns : ns.name;
  run('ip', ['netns', 'del', name], { allowFail: true });
  live.delete(name);
}

/** Registers an afterEach that removes every namespace made through makeNs in this file. */
export function cleanNamespacesAfterEach(): void {
  afterEach(() => {
    for (const name of [...live]) removeNs(name);
  });
}

/**
 * A namespace standing in for the host, for plugins run directly (CNI standalone): their bridges,
 * routes and iptables chains go there, never to the real host, and a tsnet daemon of another
 * test running on the real host is not disturbed. `argv` wraps a command to run inside it
 * (nsenter --net only: the mount namespace, and so /run/netns, stays the caller's).
 */
export function makeHostNs(tag = 'h'): TestNs & { argv(cmd: string, args: string[]): [string, string[]]; remove(): void } {
  const ns = addNs(tag);
  return {
    ...ns,
    argv: (cmd, args) => ['nsenter', [`--net=${ns.path}`, cmd, ...args]],
    remove: () => run('ip', ['netns', 'del', ns.name], { allowFail: true }),
  };
}
