// Test-side helpers that look at the kernel independently of tsnet: iproute2, iptables and friends.
// Product code never runs these tools; tests use them as the second opinion.

import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const isRoot = process.getuid?.() === 0;

/** Prefix for everything a test creates, so leftovers are recognisable and removable. */
export const TEST_PREFIX = 'tsnt';

export function uniqueName(tag = ''): string {
  return `${TEST_PREFIX}${tag}${randomBytes(3).toString('hex')}`;
}

export function run(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: 60_000 });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

export function ok(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore', timeout: 60_000 }).status === 0;
}

/** `ip -j [-n ns] ARGS` parsed. */
export function ipJson<T = any>(ns: string | undefined, ...args: string[]): T {
  const out = execFileSync('ip', [...(ns ? ['-n', ns] : []), '-j', '-d', ...args], { encoding: 'utf8' });
  return (out.trim() ? JSON.parse(out) : []) as T;
}

export function ip(ns: string | undefined, ...args: string[]): string {
  return run('ip', [...(ns ? ['-n', ns] : []), ...args]);
}

export function nsExec(ns: string, cmd: string, ...args: string[]): string {
  return run('ip', ['netns', 'exec', ns, cmd, ...args]);
}

export function ping(ns: string, target: string, count = 1): boolean {
  return ok('ip', ['netns', 'exec', ns, 'ping', '-c', String(count), '-W', '2', target]);
}

export function linkNames(ns?: string): string[] {
  return ipJson<Array<{ ifname: string }>>(ns, 'link', 'show').map((l) => l.ifname);
}

export function kernelHas(kind: string): boolean {
  const name = uniqueName('k');
  const made = ok('ip', ['link', 'add', name, 'type', kind]);
  if (made) ok('ip', ['link', 'del', name]);
  return made;
}

/** Polls `fn` every 250 ms until it holds or `ms` pass (for work that converges asynchronously). */
export async function eventually(fn: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return fn();
}
