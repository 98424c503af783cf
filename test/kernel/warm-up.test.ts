// The daemon's start-up rehearsal (cni/warm-up.ts): one real CNI attach and detach in namespaces
// of its own. It must do real kernel work there and leave nothing of it anywhere: not on the host
// (links, firewall, mounts), not in the state directory, not even after a rehearsal was killed.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { warmUp } from '../../cni/warm-up.js';
import { endpointIdFor } from '../../cni/commands.js';
import { createNetnsAt } from '../../kernel/netns.js';
import { NetlinkEvents, type NetlinkEvent } from '../../kernel/netlink-events.js';
import { isRoot, run } from '../helpers/sys.js';

// What the rehearsal makes: its bridge, its container's host-side veth, and its subnet.
const BRIDGE = 'tsnet-warm';
const VETH = `tsv${endpointIdFor('tsnet-warm-up', 'eth0').slice(0, 12)}`;
const SUBNET = '10.255.255.';

const mountsUnder = (dir: string): string[] => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir));

describe.skipIf(!isRoot)('start-up warm-up rehearsal', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsnt-warm-'));
  });
  afterEach(() => {
    for (const f of ['host', 'container']) run('umount', [join(dir, 'warm-up', f)], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('attaches and detaches for real in its own namespaces, and the host never sees any of it', async () => {
    // Every link and address event of the host while it runs: none may be the rehearsal's.
    const seen: NetlinkEvent[] = [];
    const watch = NetlinkEvents.open(undefined, (e) => seen.push(e));
    let report;
    try {
      report = await warmUp(dir);
      await new Promise((r) => setTimeout(r, 200)); // events still in flight
    } finally {
      watch.close();
    }
    // It did the work: a network rendered for the firewall, and link/address events in its namespace.
    expect(report.renders).toBeGreaterThanOrEqual(1);
    expect(report.events).toBeGreaterThan(0);
    const ours = seen.filter((e) => (e.type === 'link-new' || e.type === 'link-del') && [BRIDGE, VETH].includes(e.link.name)
      || (e.type === 'addr-new' || e.type === 'addr-del') && e.addr.ip.startsWith(SUBNET));
    expect(ours).toEqual([]);
    const links = run('ip', ['-o', 'link', 'show']);
    expect(links).not.toContain(BRIDGE);
    expect(links).not.toContain(VETH);
    for (const save of ['iptables-save', 'ip6tables-save']) {
      const rules = run(save, []);
      expect(rules).not.toContain(BRIDGE);
      expect(rules).not.toContain(SUBNET);
    }
    // Its namespaces are unmounted and its files gone.
    expect(mountsUnder(dir)).toEqual([]);
    expect(existsSync(join(dir, 'warm-up'))).toBe(false);
  });

  it('clears what a rehearsal killed midway left behind, then runs', async () => {
    run('mkdir', ['-p', join(dir, 'warm-up')]);
    await createNetnsAt(join(dir, 'warm-up', 'host'));
    writeFileSync(join(dir, 'warm-up', 'tsnet.db'), 'not a database');
    expect(mountsUnder(dir)).toHaveLength(1);
    const report = await warmUp(dir);
    expect(report.renders).toBeGreaterThanOrEqual(1);
    expect(mountsUnder(dir)).toEqual([]);
    expect(existsSync(join(dir, 'warm-up'))).toBe(false);
  });
});
