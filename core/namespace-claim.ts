// One tsnet daemon per network namespace. Two daemons in one namespace (a managed plugin beside
// `tsnet serve`, or two state directories) would each render the TSNET chains from their own store
// and overwrite the other's rules every drift pass, and both would answer for the same bridges.
//
// The claim is an abstract unix socket. Abstract names belong to the network namespace, not to the
// filesystem or mount namespace, so the claim reaches a managed plugin in its own rootfs and a
// daemon under `ip netns exec` alike, and the kernel drops it the instant its holder dies (even by
// SIGKILL): nothing stale to clean up. A second daemon asks the holder who it is and says so.

import { createConnection, createServer, type Server } from 'node:net';
import { resolve } from 'node:path';
import { NetError } from '../kernel/errors.js';

/** The abstract socket name ("\0" prefix: Linux abstract namespace). */
export const CLAIM_NAME = '\0tsnet/daemon';

export interface ClaimHolder {
  pid: number;
  stateDir: string;
}

export interface NamespaceClaim {
  release(): Promise<void>;
}

function listen(server: Server): Promise<'ok' | 'taken'> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      if (e.code === 'EADDRINUSE') resolve('taken');
      else reject(e);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve('ok');
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(CLAIM_NAME);
  });
}

/** Who holds the claim, or undefined if nobody answers (the holder is just going away). */
export function askHolder(timeoutMs = 2_000): Promise<ClaimHolder | undefined> {
  return new Promise((resolve) => {
    const sock = createConnection(CLAIM_NAME);
    let text = '';
    const done = (v: ClaimHolder | undefined): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (text += d));
    sock.on('end', () => {
      try {
        const v = JSON.parse(text) as Partial<ClaimHolder>;
        done(typeof v.pid === 'number' && typeof v.stateDir === 'string' ? { pid: v.pid, stateDir: v.stateDir } : undefined);
      } catch {
        done(undefined);
      }
    });
    sock.on('error', () => done(undefined));
  });
}

/** Whether the holder's store is another than `stateDir` (paths compared resolved). */
export function servesAnotherStore(holder: ClaimHolder, stateDir: string): boolean {
  return resolve(holder.stateDir) !== resolve(stateDir);
}

/**
 * Claims this network namespace for the daemon of `stateDir`, or fails with ALREADY_EXISTS
 * naming the daemon that has it.
 */
export async function claimNamespace(stateDir: string): Promise<NamespaceClaim> {
  const me = JSON.stringify({ pid: process.pid, stateDir } satisfies ClaimHolder);
  for (let attempt = 0; ; attempt++) {
    const server = createServer((c) => c.end(me));
    // The claim must never keep a daemon that is otherwise done from exiting.
    server.unref();
    if ((await listen(server)) === 'ok') {
      return { release: () => new Promise<void>((r) => server.close(() => r())) };
    }
    const holder = await askHolder();
    if (holder) {
      throw new NetError(
        'ALREADY_EXISTS',
        `another tsnet daemon (pid ${holder.pid}, state ${holder.stateDir}) already runs in this network namespace; ` +
          'two would overwrite each other\'s firewall chains. Stop it first, or run this one in a network namespace of its own',
      );
    }
    // Taken but nobody answered: its holder was closing. Try again briefly.
    if (attempt >= 5) throw new NetError('TRY_AGAIN', 'the tsnet daemon claim of this network namespace is held by a process that does not answer');
    await new Promise((r) => setTimeout(r, 100));
  }
}
