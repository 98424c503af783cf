// Deferred link deletion. Deleting a veth costs the kernel an RCU grace period (~20 ms here), most
// of DeleteEndpoint's time and so of `docker run --rm`'s teardown. The link is taken down at once
// (a down bridge port carries nothing and the bridge forgets its MACs, so an address reused right
// away cannot be misdelivered) and deleted in the background, one at a time. A network's
// deletion waits for the queue first. If the daemon dies meanwhile, the link still carries this
// store's mark and the reconciler removes it as a leak.

import { isNotFound } from '../../kernel/errors.js';
import type { NetlinkHandle } from '../../kernel/netlink.js';
import type { Logger } from '../driver.js';

export class LinkReaper {
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly log: Logger) {}

  /** Takes the link down now and deletes it later; false when there is no such link. */
  async retire(h: NetlinkHandle, name: string): Promise<boolean> {
    try {
      await h.linkSet({ name }, { up: false });
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
    this.tail = this.tail.then(async () => {
      try {
        await h.linkDelIfExists({ name });
      } catch (e) {
        this.log.warn({ link: name, err: (e as Error).message }, 'deferred link deletion failed; the reconciler will retry');
      }
    });
    return true;
  }

  /** Resolves when every queued deletion is done. */
  drain(): Promise<void> {
    return this.tail;
  }
}
