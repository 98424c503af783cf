// Which store made a kernel object. Several tsnet stores can share one network namespace (a
// daemon, standalone CNI calls with another TSNET_STATE_DIR, tests), so "named tsv… and not in
// my records" does not mean leaked. Links tsnet creates carry "tsnet:<id>" in their alias (the
// id is kept in the store), and only links carrying this store's mark are ever removed as leaks.

import { randomBytes } from 'node:crypto';
import type { Store } from '../store/store.js';

const KEY = 'meta/owner';

export async function ownerMark(store: Store): Promise<string> {
  const id = await store.transact((t) => {
    const have = t.get<string>(KEY);
    if (have) return have;
    const made = randomBytes(6).toString('hex');
    t.put(KEY, made);
    return made;
  });
  return `tsnet:${id}`;
}
