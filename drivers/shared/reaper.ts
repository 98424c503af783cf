// Deferred, batched link deletion. Deleting a veth costs the kernel RCU grace periods (~20 ms
// here) under the RTNL lock, which every other link operation then waits for. Retiring a link
// takes it out of its bridge at once (the bridge forgets its MACs, so an address reused right
// away cannot be misdelivered) and puts it in the reap link group; the
// background pass deletes the whole group with one RTM_DELLINK, and the kernel unregisters the
// batch paying the grace periods once. A network's deletion waits for the pass first. If the
// daemon dies meanwhile, the link still carries this store's mark and the reconciler removes it
// as a leak.
//
// The pass deletes through a handle of its own. After the kernel lets go of RTNL it still waits
// for rcu_barrier() before it answers (tens of ms for a batch), and a handle's exchanges are
// serialised: on the driver's handle, the next attach would wait for that barrier too.

import { isNotFound } from '../../kernel/errors.js';
import { NetlinkHandle } from '../../kernel/netlink.js';
import type { Logger } from '../driver.js';

/** The link group of retired links ("tsrp"); nothing else of ours uses link groups. */
export const REAP_GROUP = 0x74737270;

/** How long retired links gather before a pass deletes them together. */
const GATHER_MS = 100;

export class LinkReaper {
  private tail: Promise<void> = Promise.resolve();
  /** Namespaces (by handle) with retired links that no pass has deleted yet. */
  private readonly pending = new Set<NetlinkHandle>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly log: Logger) {}

  /** Takes the link out of its bridge now and deletes it later; false when there is no such link. */
  async retire(h: NetlinkHandle, name: string): Promise<boolean> {
    try {
      // Out of the bridge: a retired port would otherwise hold one of the bridge's 1023 port
      // numbers until the pass, and keep its MACs. Not set down: that alone cost 0.56 ms of the
      // 0.89 (a grace period in dev_close), and a link in no bridge with no address carries nothing.
      await h.linkSet({ name }, { group: REAP_GROUP, master: null });
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
    this.pending.add(h);
    // Links retired within GATHER_MS share one pass; a pass running now may have missed this
    // link, so passes are chained and each takes whatever is pending when it starts.
    this.timer ??= setTimeout(() => this.startPass(), GATHER_MS);
    return true;
  }

  private startPass(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.tail = this.tail.then(() => this.pass());
  }

  private async pass(): Promise<void> {
    const handles = [...this.pending];
    this.pending.clear();
    for (const h of handles) {
      try {
        const own = await NetlinkHandle.open(h.netns);
        try {
          await own.linkDelGroup(REAP_GROUP);
        } finally {
          await own.close();
        }
      } catch (e) {
        this.log.warn({ netns: h.namespaceLabel, err: (e as Error).message }, 'deferred link deletion failed; the reconciler will retry');
      }
    }
  }

  /** Resolves when every link retired so far is deleted. */
  drain(): Promise<void> {
    if (this.timer) this.startPass();
    return this.tail;
  }
}
