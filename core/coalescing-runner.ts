// One job at a time, with callers folded together: for work that renders shared state from the
// store (the firewall), where every caller needs a run that started after its own store change
// and any such run will do.

/**
 * Runs `job` one at a time. A call made while no run is waiting to start queues one, which starts
 * when the running one settles; calls made before that queued run starts join it (their options
 * merged) and share its outcome. So each caller gets a run that began after the call, and N
 * concurrent callers cost at most two runs.
 */
export class CoalescingRunner<O, R> {
  private waiting: { opts: O; done: Promise<R> } | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly job: (opts: O) => Promise<R>,
    private readonly merge: (a: O, b: O) => O,
  ) {}

  run(opts: O): Promise<R> {
    if (this.waiting) {
      this.waiting.opts = this.merge(this.waiting.opts, opts);
      return this.waiting.done;
    }
    const entry = { opts, done: undefined as unknown as Promise<R> };
    entry.done = this.tail.then(() => {
      // Started: from here on the store may change under this run, so later callers queue anew.
      if (this.waiting === entry) this.waiting = undefined;
      return this.job(entry.opts);
    });
    this.waiting = entry;
    this.tail = entry.done.catch(() => undefined);
    return entry.done;
  }
}
