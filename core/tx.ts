// An undo stack: every step of a mutation registers how to take itself back; on failure the steps
// are undone in reverse and the original error is rethrown. Undo failures are collected, not thrown
// over the original error.

export class Tx {
  private readonly undos: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];
  private done = false;

  constructor(private readonly log?: (msg: string, fields: Record<string, unknown>) => void) {}

  onUndo(what: string, fn: () => Promise<unknown> | unknown): void {
    this.undos.push({ what, fn });
  }

  commit(): void {
    this.done = true;
    this.undos.length = 0;
  }

  async rollback(): Promise<void> {
    if (this.done) return;
    this.done = true;
    for (const u of this.undos.reverse()) {
      try {
        await u.fn();
      } catch (e) {
        this.log?.('undo step failed', { step: u.what, err: (e as Error).message });
      }
    }
  }

  /** Runs body; commits on success, rolls back and rethrows on failure. */
  static async run<T>(log: Tx['log'], body: (tx: Tx) => Promise<T>): Promise<T> {
    const tx = new Tx(log);
    try {
      const out = await body(tx);
      tx.commit();
      return out;
    } catch (e) {
      await tx.rollback();
      throw e;
    }
  }
}

/** Serialises async work per key (one network's calls in order; different networks concurrently). */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Whether any key has work queued or running. */
  get busy(): boolean {
    return this.tails.size > 0;
  }

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}
