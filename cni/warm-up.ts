// The daemon's warm-up: before it answers anyone, one CNI attach and detach is rehearsed through
// the real front-end, services, tsbridge driver, IPAM and netlink, in namespaces of its own.
//
// Why: V8 compiles a function the first time it runs, and a first attach runs several hundred of
// them for the first time. On a fresh daemon the first CNI ADD (which also makes the network) took
// 33-44 ms; after one rehearsed network it took 17-22 ms (2 vCPU VM, kernel 6.18). Kubernetes and
// Docker both meet that cost on the first container after every daemon start.
//
// Nothing of the host is touched: the rehearsal's "host" is a namespace pinned under the state
// directory (not in /run/netns), its firewall renders rules and commits none, and its store is a
// throwaway file there. The daemon starts even when the rehearsal fails.

import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createNetnsAt, deleteNetns } from '../kernel/netns.js';
import { NetlinkEvents } from '../kernel/netlink-events.js';
import { RenderOnlyFirewall } from '../kernel/firewall/render-only.js';
import { openCniRuntime } from '../core/cni-runtime.js';
import { LinkReaper } from '../drivers/shared/reaper.js';
import type { Logger } from '../drivers/driver.js';
import { runCni } from './dispatch.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** The rehearsal's conflist: tsbridge with tsipam, masquerading, as a Kubernetes node's. */
const CONF = JSON.stringify({
  cniVersion: '1.1.0', name: 'warm-up', type: 'tsbridge', bridge: 'tsnet-warm', isGateway: true, isDefaultGateway: true,
  ipMasq: true, ipam: { type: 'tsipam', subnet: '10.255.255.0/29' },
});

export interface WarmUpReport {
  /** Milliseconds the rehearsal took. */
  ms: number;
  /** Rule sets the render-only firewall was asked for: at least one when the network was made. */
  renders: number;
  /** Link and address events of the rehearsal decoded. */
  events: number;
}

/** Removes a rehearsal's namespaces and files, whether it ended or its daemon was killed midway. */
async function clear(dir: string): Promise<void> {
  for (const f of ['host', 'container']) await deleteNetns({ path: join(dir, f) }).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

/**
 * Rehearses an ADD then a DEL (which also removes the network it made) under `stateDir/warm-up`.
 * Throws what failed; the caller logs it and starts anyway.
 */
export async function warmUp(stateDir: string): Promise<WarmUpReport> {
  const t0 = performance.now();
  const dir = join(stateDir, 'warm-up');
  await clear(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const firewall = new RenderOnlyFirewall();
  let events = 0;
  try {
    const hostNs = await createNetnsAt(join(dir, 'host'));
    const containerNs = await createNetnsAt(join(dir, 'container'));
    const reaper = new LinkReaper(quiet);
    // The same runtime a standalone CNI call opens, with the rehearsal's namespace as its host.
    const rt = await openCniRuntime(dir, quiet, { hostNs, firewall, reaper });
    // The reconciler decodes every link and address event of the real host: the rehearsal's are
    // decoded the same way, and dropped.
    let watch: NetlinkEvents | undefined;
    try {
      watch = NetlinkEvents.open(hostNs, () => void events++);
      for (const command of ['ADD', 'DEL']) {
        let out = '';
        const env = { CNI_COMMAND: command, CNI_CONTAINERID: 'tsnet-warm-up', CNI_NETNS: containerNs.path, CNI_IFNAME: 'eth0' };
        const code = await runCni('tsbridge', { env, stdin: CONF, out: (t) => (out += t) }, async () => rt);
        if (code !== 0) throw new Error(`rehearsed CNI ${command} failed: ${out}`);
      }
      await reaper.drain();
    } finally {
      watch?.close();
      await rt.close();
    }
  } finally {
    await clear(dir);
  }
  return { ms: performance.now() - t0, renders: firewall.renders, events };
}
