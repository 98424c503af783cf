// iptables backend. tsnet owns a few chains and renders their whole content from the desired state
// in one iptables-restore --noflush batch per change: declaring a chain in the batch flushes it, so
// a render is atomic, idempotent, tolerant of rules that are already gone, and doubles as the repair
// step after someone flushed our rules. Jumps from the built-in chains are ensured separately.
// Uses the same `iptables` binary (and so the same nft/legacy backend) as Docker.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NetError } from '../errors.js';

const execFileP = promisify(execFile);

export type IpFamily = 4 | 6;

export interface FirewallNetwork {
  /** Bridge interface name. */
  bridge: string;
  subnets4: string[];
  subnets6: string[];
  internal: boolean;
  icc: boolean;
  masquerade: boolean;
}

export const CHAINS = {
  forward: 'TSNET-FORWARD',
  iso1: 'TSNET-ISOLATION-1',
  iso2: 'TSNET-ISOLATION-2',
  postrouting: 'TSNET-POSTROUTING',
} as const;

/** Bridges of Docker's own networks, which our networks are isolated from. */
const FOREIGN_BRIDGES = ['docker0', 'br-+'];

/** The restore text for one family: the same layout for iptables and ip6tables. */
export function renderRules(nets: readonly FirewallNetwork[], family: IpFamily = 4): string {
  const subnets = (n: FirewallNetwork): string[] => (family === 4 ? n.subnets4 : n.subnets6);
  const f: string[] = ['*filter', `:${CHAINS.forward} - [0:0]`, `:${CHAINS.iso1} - [0:0]`, `:${CHAINS.iso2} - [0:0]`];
  f.push(`-A ${CHAINS.forward} -j ${CHAINS.iso1}`);
  for (const n of nets) {
    const b = n.bridge;
    f.push(`-A ${CHAINS.forward} -o ${b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    f.push(`-A ${CHAINS.forward} -i ${b} -o ${b} -j ${n.icc ? 'ACCEPT' : 'DROP'}`);
    if (n.internal) {
      for (const s of subnets(n)) {
        f.push(`-A ${CHAINS.iso1} -i ${b} ! -d ${s} -j DROP`);
        f.push(`-A ${CHAINS.iso1} -o ${b} ! -s ${s} -j DROP`);
      }
      f.push(`-A ${CHAINS.iso1} -i ${b} ! -o ${b} -j DROP`);
    } else {
      f.push(`-A ${CHAINS.iso1} -i ${b} ! -o ${b} -j ${CHAINS.iso2}`);
      f.push(`-A ${CHAINS.forward} -i ${b} ! -o ${b} -j ACCEPT`);
    }
    f.push(`-A ${CHAINS.iso2} -o ${b} -j DROP`);
  }
  for (const fb of FOREIGN_BRIDGES) f.push(`-A ${CHAINS.iso2} -o ${fb} -j DROP`);
  f.push('COMMIT');
  const nat: string[] = ['*nat', `:${CHAINS.postrouting} - [0:0]`];
  for (const n of nets) {
    if (n.internal || !n.masquerade) continue;
    for (const s of subnets(n)) nat.push(`-A ${CHAINS.postrouting} -s ${s} ! -o ${n.bridge} -j MASQUERADE`);
  }
  nat.push('COMMIT');
  return `${[...f, ...nat].join('\n')}\n`;
}

const BIN = { 4: 'iptables', 6: 'ip6tables' } as const;

async function iptables(family: IpFamily, args: string[]): Promise<string> {
  const { stdout } = await execFileP(BIN[family], ['-w', '10', ...args]);
  return stdout;
}

async function restore(family: IpFamily, text: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = execFile(`${BIN[family]}-restore`, ['--noflush', '-w', '10'], (err, _out, stderr) => {
      if (err) reject(new NetError('INTERNAL', `${BIN[family]}-restore failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
    p.stdin!.end(text);
  });
}

export class IptablesFirewall {
  readonly name = 'iptables';

  /** Renders every tsnet chain from `nets` and makes sure the built-in chains jump to ours. */
  async apply(nets: readonly FirewallNetwork[]): Promise<void> {
    for (const family of [4, 6] as const) {
      await restore(family, renderRules(nets, family));
      await this.ensureJumps(family);
    }
  }

  /** Removes our jumps and chains entirely (used by tests and `tsnet` uninstall). */
  async removeAll(): Promise<void> {
    for (const family of [4, 6] as const) {
      for (const [table, chain, target] of [['filter', 'FORWARD', CHAINS.forward], ['nat', 'POSTROUTING', CHAINS.postrouting]] as const) {
        while (await iptables(family, ['-t', table, '-D', chain, '-j', target]).then(() => true, () => false));
      }
      for (const [table, chain] of [['filter', CHAINS.forward], ['filter', CHAINS.iso1], ['filter', CHAINS.iso2], ['nat', CHAINS.postrouting]] as const) {
        await iptables(family, ['-t', table, '-F', chain]).catch(() => undefined);
        await iptables(family, ['-t', table, '-X', chain]).catch(() => undefined);
      }
    }
  }

  private async ensureJumps(family: IpFamily): Promise<void> {
    // FORWARD: our jump goes right after DOCKER-USER when Docker has one, so administrators'
    // DOCKER-USER rules filter our traffic too; otherwise first.
    const rules = async (): Promise<string[]> =>
      (await iptables(family, ['-S', 'FORWARD'])).split('\n').filter((l) => l.startsWith('-A FORWARD'));
    let fwd = await rules();
    const at = (r: string[], line: string): number => r.findIndex((l) => l === line);
    const expected = (r: string[]): number => at(r, '-A FORWARD -j DOCKER-USER') + 1; // 0 when absent
    if (at(fwd, `-A FORWARD -j ${CHAINS.forward}`) !== expected(fwd)) {
      while (at(fwd, `-A FORWARD -j ${CHAINS.forward}`) >= 0) {
        await iptables(family, ['-D', 'FORWARD', '-j', CHAINS.forward]);
        fwd = await rules();
      }
      await iptables(family, ['-I', 'FORWARD', String(expected(fwd) + 1), '-j', CHAINS.forward]);
    }
    const post = await iptables(family, ['-t', 'nat', '-C', 'POSTROUTING', '-j', CHAINS.postrouting]).then(() => true, () => false);
    if (!post) await iptables(family, ['-t', 'nat', '-I', 'POSTROUTING', '1', '-j', CHAINS.postrouting]);
  }
}
