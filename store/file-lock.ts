// A cross-process lock on a file, for the few steps that must not run twice at once across the
// daemon and concurrent CNI processes (creating a network's bridge). The lock file holds the
// owner's pid; a lock whose owner is dead is taken over.

import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { NetError } from '../kernel/errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function withFileLock<T>(path: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = 0;
      try {
        owner = Number(readFileSync(path, 'utf8').trim() || '0');
      } catch (re) {
        if ((re as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile: try again
        throw re;
      }
      if (owner && !alive(owner)) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() > end) throw new NetError('TRY_AGAIN', `timed out waiting for lock ${path} held by pid ${owner}`);
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}
