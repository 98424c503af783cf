// Throwaway network namespaces for kernel tests: each test builds its own "host" namespace so the
// real host's interfaces and routes are never touched.

import { afterEach } from 'vitest';
import { run, uniqueName } from './sys.js';

export interface TestNs {
  name: string;
  path: string;
}

const live = new Set<string>();

export function makeNs(tag = 'n'): TestNs {
  const name = uniqueName(tag);
  run('ip', ['netns', 'add', name]);
  run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  live.add(name);
  return { name, path: `/run/netns/${name}` };
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
