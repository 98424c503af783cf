// Where the CLI's data comes from: the running daemon's control API (root-only unix socket), or,
// when no daemon answers, the store itself (read-only use; SQLite lets a reader share it).

import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Inventory } from '../../core/inventory.js';
import { CliError, EXIT } from './output.js';

export interface GlobalOptions {
  stateDir: string;
  apiSocket: string;
  json?: boolean;
}

export interface ApiAnswer<T> {
  status: number;
  body: T;
}

/** One API call; undefined when no daemon listens on the socket. */
export function api<T>(opts: GlobalOptions, method: 'GET' | 'POST', path: string): Promise<ApiAnswer<T> | undefined> {
  if (!existsSync(opts.apiSocket)) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: opts.apiSocket, path, method, timeout: 30_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: (res.headers['content-type'] ?? '').includes('json') ? JSON.parse(text) : (text as T) });
        } catch (e) {
          reject(e);
        }
      });
    });
    // A socket file left by a killed daemon: nobody answers, which is "daemon down".
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? resolve(undefined) : reject(e)));
    req.on('timeout', () => req.destroy(new Error(`the daemon did not answer ${path} within 30 s`)));
    req.end();
  });
}

/** Raises the API's error as a CliError with the matching exit code. */
export function unwrap<T>(a: ApiAnswer<T | { error: string }>): T {
  if (a.status >= 200 && a.status < 300) return a.body as T;
  const msg = (a.body as { error?: string })?.error ?? `HTTP ${a.status}`;
  throw new CliError(msg, a.status === 404 ? EXIT.NOT_FOUND : a.status === 400 ? EXIT.USAGE : EXIT.FAILED);
}

/** The store read directly (daemon down). Says so on stderr, so scripts reading stdout are unaffected. */
export async function offline<T>(opts: GlobalOptions, fn: (inv: Inventory) => T | Promise<T>): Promise<T> {
  const path = join(opts.stateDir, 'tsnet.db');
  if (!existsSync(path)) throw new CliError(`no daemon answers on ${opts.apiSocket} and there is no store at ${path}`);
  console.error(`(daemon not running: read from ${path})`);
  // Loaded only now: with the daemon up, a command needs neither SQLite nor the IPAM and DNS code.
  const [{ SqliteStore }, { readInventory }] = await Promise.all([import('../../store/sqlite-store.js'), import('../../core/inventory.js')]);
  const store = new SqliteStore(path);
  try {
    return await fn(await readInventory(store));
  } finally {
    await store.close();
  }
}

/** From the daemon if it answers, else from the store. */
export async function fetchOr<T>(opts: GlobalOptions, path: string, fallback: (inv: Inventory) => T | Promise<T>): Promise<T> {
  const a = await api<T>(opts, 'GET', path);
  return a ? unwrap<T>(a) : offline(opts, fallback);
}
