// The firewall's render queue: one run at a time, each caller served by a run that began after its
// call, concurrent callers folded into one run.

import { describe, expect, it } from 'vitest';
import { CoalescingRunner } from '../../core/coalescing-runner.js';

/** A job whose runs the test finishes by hand; `log` records each run's start and its options. */
function scene() {
  const log: string[] = [];
  const finish: Array<(fail?: Error) => void> = [];
  let running = 0;
  let overlapped = false;
  const runner = new CoalescingRunner<string[], number>(
    (opts) => {
      if (running++) overlapped = true;
      const n = log.push(`run ${log.length + 1}: ${opts.join(',')}`);
      return new Promise<number>((resolve, reject) => finish.push((fail) => {
        running--;
        if (fail) reject(fail);
        else resolve(n);
      }));
    },
    (a, b) => [...a, ...b],
  );
  const tick = () => new Promise((r) => setImmediate(r));
  return { runner, log, finish, tick, overlapped: () => overlapped };
}

describe('CoalescingRunner', () => {
  it('callers arriving while a run is going share one later run, which sees all their options', async () => {
    const s = scene();
    const first = s.runner.run(['a']);
    await s.tick();
    expect(s.log).toEqual(['run 1: a']);
    // a started before these calls, so it cannot serve them: they wait for one run after it
    const later = [s.runner.run(['b']), s.runner.run(['c']), s.runner.run(['d'])];
    await s.tick();
    expect(s.log).toHaveLength(1);
    s.finish[0]!();
    expect(await first).toBe(1);
    await s.tick();
    expect(s.log).toEqual(['run 1: a', 'run 2: b,c,d']);
    s.finish[1]!();
    expect(await Promise.all(later)).toEqual([2, 2, 2]);
    expect(s.overlapped()).toBe(false);
  });

  it('calls in one tick with nothing running share the first run', async () => {
    const s = scene();
    const both = Promise.all([s.runner.run(['a']), s.runner.run(['b'])]);
    await s.tick();
    expect(s.log).toEqual(['run 1: a,b']);
    s.finish[0]!();
    expect(await both).toEqual([1, 1]);
  });

  it('a failed run fails its callers only; the next run still happens', async () => {
    const s = scene();
    const first = s.runner.run(['a']);
    await s.tick();
    const second = s.runner.run(['b']);
    s.finish[0]!(new Error('iptables-restore: exit 4'));
    await expect(first).rejects.toThrow('exit 4');
    await s.tick();
    expect(s.log).toEqual(['run 1: a', 'run 2: b']);
    s.finish[1]!();
    expect(await second).toBe(2);
  });
});
