// iptables backend. tsnet owns a few chains and renders their whole content from the desired state
// in one iptables-restore --noflush batch per change: declaring a chain in the batch flushes it, so
// a render is atomic, idempotent, tolerant of rules that are already gone, and doubles as the repair
// step after someone flushed our rules. A change that only adds rules is sent as inserts instead
// (incremental.ts), which nf_tables commits without a grace period. Jumps from the built-in chains
// are ensured separately.
// Uses the same `iptables` binary (and so the same nft/legacy backend) as Docker.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { nftGeneration } from './nft-generation.js';
import { NetError } from '../errors.js';
import { insertOnlyBlock } from './incremental.js';

const execFileP = promisify(execFile);

export type IpFamily = 4 | 6;

/** A published port as the firewall renders it (see drivers/shared/ports.ts). */
export interface FirewallPort {
  proto: 'tcp' | 'udp' | 'sctp';
  family: IpFamily;
  hostIp: string;
  hostPort: number;
  hostPortEnd: number;
  containerIp: string;
  containerPort: number;
}

export interface FirewallNetwork {
  /** Bridge interface name. */
  bridge: string;
  subnets4: string[];
  subnets6: string[];
  internal: boolean;
  icc: boolean;
  masquerade: boolean;
  /** With masquerade: the IPv4 source address traffic leaving the host gets (SNAT), instead of the outgoing interface's. */
  snatSource4?: string;
  /** Published ports of the network's endpoints, already merged into ranges. */
  ports: FirewallPort[];
  /** Addresses where tsnet's resolver for this network listens (its gateways). */
  resolvers?: string[];
  /**
   * The interface has IPv6 switched off (disable_ipv6): the kernel neither routes IPv6 from nor to
   * it, so the ip6tables render leaves the network out (as Docker does for IPv4-only networks).
   */
  ipv6Disabled?: boolean;
}

export const CHAINS = {
  forward: 'TSNET-FORWARD',
  iso1: 'TSNET-ISOLATION-1',
  iso2: 'TSNET-ISOLATION-2',
  postrouting: 'TSNET-POSTROUTING',
  dnat: 'TSNET-DNAT',
  raw: 'TSNET-RAW',
  rawOut: 'TSNET-RAW-OUTPUT',
} as const;

/** Host-wide rules beside the per-network ones. */
export interface FirewallExtras {
  /**
   * This host's VXLAN traffic (its VTEP address and UDP port) skips connection tracking: it is
   * never NATed, and tracking every encapsulated packet in both directions costs overlay
   * throughput (measured: about 5%). Host firewalls must then accept it by port, not by state.
   */
  untrackVxlan?: { vtep: string; port: number };
  /**
   * The port of the per-network resolvers. With it, a network's resolver is reachable only from
   * its own bridge (and the host itself): the resolver refuses strangers anyway, but a container
   * must not even reach another network's listener.
   */
  resolverPort?: number;
}

/** Built-in chains that jump to ours: [table, chain, match args, target]. */
const HOOKS: ReadonlyArray<readonly [string, string, readonly string[], string]> = [
  ['nat', 'POSTROUTING', [], CHAINS.postrouting],
  ['nat', 'PREROUTING', ['-m', 'addrtype', '--dst-type', 'LOCAL'], CHAINS.dnat],
  ['nat', 'OUTPUT', ['-m', 'addrtype', '--dst-type', 'LOCAL'], CHAINS.dnat],
  ['raw', 'PREROUTING', [], CHAINS.raw],
  ['raw', 'OUTPUT', [], CHAINS.rawOut],
];

function dnatRule(p: FirewallPort): string {
  const dst = isAny(p.hostIp) ? '' : ` -d ${p.hostIp}`;
  const dport = p.hostPortEnd > p.hostPort ? `${p.hostPort}:${p.hostPortEnd}` : `${p.hostPort}`;
  const ip = p.family === 6 ? `[${p.containerIp}]` : p.containerIp;
  let to: string;
  if (p.hostPortEnd === p.hostPort) to = `${ip}:${p.containerPort}`;
  else if (p.containerPort === p.hostPort) to = p.containerIp; // same ports: keep them
  else to = `${ip}:${p.containerPort}-${p.containerPort + (p.hostPortEnd - p.hostPort)}/${p.hostPort}`; // shifted 1:1
  return `-A ${CHAINS.dnat}${dst} -p ${p.proto} -m ${p.proto} --dport ${dport} -j DNAT --to-destination ${to}`;
}

const isAny = (ip: string): boolean => ip === '0.0.0.0' || ip === '::';

/** Bridges of Docker's own networks, which our networks are isolated from. */
const FOREIGN_BRIDGES = ['docker0', 'br-+'];

/** The restore text for one family: the same layout for iptables and ip6tables. */
export function renderRules(all: readonly FirewallNetwork[], family: IpFamily = 4, extras: FirewallExtras = {}): string {
  const nets = family === 6 ? all.filter((n) => !n.ipv6Disabled) : all;
  const subnets = (n: FirewallNetwork): string[] => (family === 4 ? n.subnets4 : n.subnets6);
  const f: string[] = ['*filter', `:${CHAINS.forward} - [0:0]`, `:${CHAINS.iso1} - [0:0]`, `:${CHAINS.iso2} - [0:0]`];
  // Traffic that stays on one icc network (bridged through br_netfilter, most of the volume) is
  // accepted by the first rule it meets instead of walking every network's rules.
  for (const n of nets) if (n.icc) f.push(`-A ${CHAINS.forward} -i ${n.bridge} -o ${n.bridge} -j ACCEPT`);
  // Connections to published ports (DNAT) pass isolation in both directions: that is how another
  // network, Docker's bridges or the outside reach a published port. Internal networks publish
  // nothing and get no such exception.
  for (const n of nets) {
    if (n.internal) continue;
    f.push(`-A ${CHAINS.forward} -o ${n.bridge} -m conntrack --ctstate DNAT -j ACCEPT`);
    f.push(`-A ${CHAINS.forward} -i ${n.bridge} -m conntrack --ctstate DNAT -j ACCEPT`);
  }
  f.push(`-A ${CHAINS.forward} -j ${CHAINS.iso1}`);
  for (const n of nets) {
    const b = n.bridge;
    f.push(`-A ${CHAINS.forward} -o ${b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    if (!n.icc) f.push(`-A ${CHAINS.forward} -i ${b} -o ${b} -j DROP`);
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
  const nat: string[] = ['*nat', `:${CHAINS.postrouting} - [0:0]`, `:${CHAINS.dnat} - [0:0]`];
  const raw: string[] = ['*raw', `:${CHAINS.raw} - [0:0]`, `:${CHAINS.rawOut} - [0:0]`];
  let loopback6Guarded = false;
  const vx = extras.untrackVxlan;
  if (vx && vx.vtep.includes(':') === (family === 6)) {
    raw.push(`-A ${CHAINS.raw} -d ${vx.vtep} -p udp -m udp --dport ${vx.port} -j CT --notrack`);
    raw.push(`-A ${CHAINS.rawOut} -s ${vx.vtep} -p udp -m udp --dport ${vx.port} -j CT --notrack`);
  }
  for (const n of nets) {
    // The bridge has route_localnet on (for 127.0.0.1 ports); packets from containers to
    // 127.0.0.0/8 must not reach the host's loopback services through it.
    if (family === 4) raw.push(`-A ${CHAINS.raw} -i ${n.bridge} -d 127.0.0.0/8 -j DROP`);
    if (n.internal) continue;
    const ports = n.ports.filter((p) => p.family === family);
    if (n.masquerade) {
      const to = family === 4 && n.snatSource4 ? `SNAT --to-source ${n.snatSource4}` : 'MASQUERADE';
      for (const s of subnets(n)) nat.push(`-A ${CHAINS.postrouting} -s ${s} ! -o ${n.bridge} -j ${to}`);
    }
    if (ports.length) {
      // Hairpin (a container of this network reaching a published port through a host address)
      // and host-originated connections (127.0.0.1, host addresses) need a source the container
      // can answer: the bridge's address. External clients keep their own address.
      for (const s of subnets(n)) nat.push(`-A ${CHAINS.postrouting} -s ${s} -o ${n.bridge} -m conntrack --ctstate DNAT -j MASQUERADE`);
      nat.push(`-A ${CHAINS.postrouting} -o ${n.bridge} -m addrtype --src-type LOCAL -m conntrack --ctstate DNAT -j MASQUERADE`);
    }
    for (const p of ports) {
      // IPv6 loopback cannot be NATed off the host (the kernel drops ::1 leaving lo), so a
      // connection to [::1]:port goes to the port's relay (without one, to its hold, which
      // refuses it at once).
      if (family === 6 && !loopback6Guarded) {
        nat.push(`-A ${CHAINS.dnat} -d ::1/128 -j RETURN`);
        loopback6Guarded = true;
      }
      nat.push(dnatRule(p));
      // route_localnet (needed for 127.0.0.1 ports) would let other hosts reach them through a
      // crafted destination; drop such packets before NAT sees them (moby/moby#41872).
      if (family === 4 && p.hostIp.startsWith('127.')) {
        const dport = p.hostPortEnd > p.hostPort ? `${p.hostPort}:${p.hostPortEnd}` : `${p.hostPort}`;
        raw.push(`-A ${CHAINS.raw} -d ${p.hostIp} ! -i lo -p ${p.proto} -m ${p.proto} --dport ${dport} -j DROP`);
      }
    }
  }
  // Last in the chain, after the rules above have had their say: DNS to a network's resolver
  // from its own bridge passes; to any resolver from anywhere else (but the host) is dropped.
  const rp = extras.resolverPort;
  if (rp) {
    const mine = (a: string): boolean => a.includes(':') === (family === 6);
    for (const n of nets) {
      for (const a of (n.resolvers ?? []).filter(mine)) {
        for (const proto of ['udp', 'tcp']) raw.push(`-A ${CHAINS.raw} -i ${n.bridge} -d ${a} -p ${proto} -m ${proto} --dport ${rp} -j RETURN`);
      }
    }
    for (const n of nets) {
      for (const a of (n.resolvers ?? []).filter(mine)) {
        for (const proto of ['udp', 'tcp']) raw.push(`-A ${CHAINS.raw} -d ${a} ! -i lo -p ${proto} -m ${proto} --dport ${rp} -j DROP`);
      }
    }
  }
  nat.push('COMMIT');
  raw.push('COMMIT');
  return `${[...f, ...nat, ...raw].join('\n')}\n`;
}

const BIN = { 4: 'iptables', 6: 'ip6tables' } as const;

/** Restore text split by table: "filter" -> "*filter\n…COMMIT\n". */
export function tableBlocks(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let table = '';
  let lines: string[] = [];
  for (const l of text.split('\n')) {
    if (l.startsWith('*')) {
      table = l.slice(1);
      lines = [l];
    } else if (table) {
      lines.push(l);
      if (l === 'COMMIT') {
        out.set(table, `${lines.join('\n')}\n`);
        table = '';
      }
    }
  }
  return out;
}

/** "table CHAIN" -> number of -A lines, for tsnet's own chains, in restore or save text. */
function countRules(text: string): Map<string, number> {
  const ours = new Set<string>(Object.values(CHAINS));
  const counts = new Map<string, number>();
  let table = '';
  for (const l of text.split('\n')) {
    if (l.startsWith('*')) table = l.slice(1);
    else if (l.startsWith(':')) {
      const chain = l.slice(1).split(' ')[0]!;
      if (ours.has(chain)) counts.set(`${table} ${chain}`, counts.get(`${table} ${chain}`) ?? 0);
    } else if (l.startsWith('-A ')) {
      const chain = l.split(' ')[1]!;
      if (ours.has(chain)) counts.set(`${table} ${chain}`, (counts.get(`${table} ${chain}`) ?? 0) + 1);
    }
  }
  return counts;
}

/** The -A lines of one chain in save text, in order: what `iptables -t TABLE -S CHAIN` lists. */
function chainRules(saved: string, table: string, chain: string): string[] {
  const out: string[] = [];
  let t = '';
  for (const l of saved.split('\n')) {
    if (l.startsWith('*')) t = l.slice(1);
    else if (t === table && l.startsWith(`-A ${chain} `)) out.push(l);
  }
  return out;
}

/**
 * Whether `rules` (one chain's) jump to `target`. Any rule doing so counts, whatever its match:
 * only tsnet jumps to its chains, and a stricter test that missed iptables-save's spelling of a
 * match would insert the jump again on every check.
 */
const jumpsTo = (rules: readonly string[], target: string): boolean => rules.some((l) => l.endsWith(` -j ${target}`));

/** Everything iptables-save (or ip6tables-save) prints: read-only, no commit. */
async function saveText(family: IpFamily): Promise<string> {
  return (await execFileP(`${BIN[family]}-save`, [], { maxBuffer: 64 * 1024 * 1024 })).stdout;
}

async function iptables(family: IpFamily, args: string[]): Promise<string> {
  const { stdout } = await execFileP(BIN[family], ['-w', '10', ...args]);
  return stdout;
}

/** Which backend the `iptables` on PATH drives ("nf_tables" or "legacy"), and its version line. */
export async function iptablesBackend(): Promise<{ backend: 'nf_tables' | 'legacy' | 'unknown'; version: string }> {
  const version = (await execFileP('iptables', ['-V'])).stdout.trim();
  return { backend: version.includes('nf_tables') ? 'nf_tables' : version.includes('legacy') ? 'legacy' : 'unknown', version };
}

/** The filter FORWARD chain's policy and whether it jumps to tsnet's chain. */
export async function forwardChain(family: IpFamily): Promise<{ policy: string; jumpsToTsnet: boolean }> {
  const text = await iptables(family, ['-t', 'filter', '-S', 'FORWARD']);
  return {
    policy: /^-P FORWARD (\w+)/m.exec(text)?.[1] ?? 'unknown',
    jumpsToTsnet: jumpsTo(text.split('\n').filter((l) => l.startsWith('-A FORWARD ')), CHAINS.forward),
  };
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
  /** Table blocks sent as a rewrite (chains flushed and refilled) and as inserts only. */
  readonly sent = { rewrites: 0, inserts: 0 };
  /**
   * iptables-save runs made by apply (each one is an exec and a full read of the table set), and
   * drift checks answered from the nf_tables generation without any.
   */
  readonly read = { saves: 0, driftSkips: 0 };
  private jumpsCheckedAt = 0;
  /** Per family, the text of each table as last applied (what the kernel should hold). */
  private readonly applied = new Map<IpFamily, Map<string, string>>();
  /**
   * The nf_tables generation at the end of the last render after which the kernel was known to
   * hold all of `applied` and our jumps: a forced render, or one that began from such a state.
   * Undefined when unknown (legacy iptables, a render that failed or verified only a part).
   */
  private settledGen: number | undefined;
  private nftBackend: Promise<boolean> | undefined;

  private async generation(): Promise<number | undefined> {
    // Legacy iptables does not commit through nf_tables: the counter would say nothing of our rules.
    this.nftBackend ??= iptablesBackend().then((b) => b.backend === 'nf_tables', () => false);
    return (await this.nftBackend) ? nftGeneration() : undefined;
  }

  /**
   * Renders every tsnet chain from `nets` and makes sure the built-in chains jump to ours. The
   * jumps are checked at most every few seconds (each check is an iptables-save); `force` checks
   * now, as the periodic reconcile does.
   *
   * When nothing but us has committed to nf_tables since a render that left everything known
   * (settledGen), the kernel still holds it: no iptables-save for the inserts' precondition or
   * the jumps, only the restore. A network's first render went from save + restore to restore.
   */
  async apply(nets: readonly FirewallNetwork[], opts: { force?: boolean; extras?: FirewallExtras } = {}): Promise<void> {
    const gen = opts.force ? undefined : await this.generation();
    const untouched = gen !== undefined && gen === this.settledGen;
    this.settledGen = undefined; // unknown until this render is through
    const checkJumps = !untouched && (opts.force || Date.now() - this.jumpsCheckedAt > 5_000);
    // The two families are independent tables: render them concurrently.
    await Promise.all(([4, 6] as const).map(async (family) => {
      // Only tables whose text changed since the last apply go to the kernel: with nf_tables
      // every table in a batch is a commit that waits for an RCU grace period (~13 ms each here,
      // serialised per namespace), even when its content is the same. The periodic drift check
      // forces a full render if someone changed our chains meanwhile.
      // One iptables-save serves both the inserts' precondition and the jump checks.
      let saved: Promise<string> | undefined;
      const save = (): Promise<string> => (saved ??= (this.read.saves++, saveText(family)));
      const blocks = tableBlocks(renderRules(nets, family, opts.extras));
      const last = opts.force ? undefined : this.applied.get(family);
      const changed = [...blocks].filter(([table, text]) => last?.get(table) !== text);
      if (changed.length) {
        this.applied.delete(family); // unknown until the batch is through
        // A table whose change only adds rules gets inserts, not a rewrite (incremental.ts: a
        // rewrite deletes every rule, and nf_tables then makes iptables-restore wait out RCU
        // grace periods). Should the inserts not apply, the full rewrite repairs whatever it is.
        const full = changed.map(([, text]) => text).join('');
        const inserts = changed.map(([table, text]) => {
          const before = last?.get(table);
          return (before !== undefined ? insertOnlyBlock(before, text) : undefined) ?? text;
        }).join('');
        const rewrite = async (): Promise<void> => {
          await restore(family, full);
          this.sent.rewrites += changed.length;
        };
        if (inserts === full || !(untouched || (await this.kernelHolds(save, changed.map(([t]) => t), last!)))) {
          await rewrite();
        } else {
          await restore(family, inserts).then(() => {
            this.sent.inserts += changed.length;
          }, rewrite);
        }
        this.applied.set(family, new Map([...(last ?? []), ...changed]));
      }
      if (checkJumps) await this.ensureJumps(family, await save().catch(() => undefined));
    }));
    if (checkJumps) this.jumpsCheckedAt = Date.now();
    // Read after our own commits; another writer's landing in between is left to the periodic
    // drift check, as any change made between two renders always was.
    if (untouched || opts.force) this.settledGen = await this.generation();
  }

  /**
   * Whether tsnet's chains in `tables` hold as many rules as `last` says: inserts are placed by
   * position, so they need the kernel to be where we left it (another writer, such as a
   * standalone CNI call on the same store, may have moved it). One iptables-save, no commit.
   */
  private async kernelHolds(save: () => Promise<string>, tables: string[], last: Map<string, string>): Promise<boolean> {
    try {
      const have = countRules(await save());
      const want = countRules(tables.map((t) => last.get(t) ?? '').join(''));
      return [...want].every(([k, n]) => have.get(k) === n) && [...have].every(([k, n]) => !tables.includes(k.split(' ')[0]!) || want.get(k) === n);
    } catch {
      return false;
    }
  }

  /**
   * What differs between the kernel and what `nets` renders, cheaply (one iptables-save per
   * family): a chain whose rule count is off, or a missing jump. Rule text is not compared, as
   * iptables-save normalises it; a flush, a reload or a deleted rule all change a count.
   */
  async drift(nets: readonly FirewallNetwork[], extras: FirewallExtras = {}): Promise<string[]> {
    // Nothing has committed to nf_tables since a render that left everything known, and the rules
    // wanted now are the ones that render sent: the kernel still holds them. This is the periodic
    // pass's common case, and it spares two iptables-save runs (each a fork of the daemon).
    const gen = await this.generation();
    const rendered = { 4: renderRules(nets, 4, extras), 6: renderRules(nets, 6, extras) };
    const asApplied = this.holdsRender(rendered);
    if (gen !== undefined && gen === this.settledGen && asApplied) {
      this.read.driftSkips++;
      return [];
    }
    const problems: string[] = [];
    let forwardInPlace = true;
    for (const family of [4, 6] as const) {
      const want = countRules(rendered[family]);
      let saved: string;
      try {
        saved = await saveText(family);
      } catch (e) {
        problems.push(`${BIN[family]}-save failed: ${(e as Error).message}`);
        continue;
      }
      const have = countRules(saved);
      for (const [key, n] of want) if ((have.get(key) ?? 0) !== n) problems.push(`${BIN[family]} ${key}: ${have.get(key) ?? 0} rules, want ${n}`);
      for (const [table, chain, , target] of [['filter', 'FORWARD', [], CHAINS.forward] as const, ...HOOKS]) {
        if (!jumpsTo(chainRules(saved, table, chain), target)) problems.push(`${BIN[family]} ${table} ${chain} does not jump to ${target}`);
      }
      // Not drift (another tool may insist on the top of FORWARD, and repairing it every pass
      // would be a fight), but a render should still move it, so the kernel is not "known".
      const fwd = chainRules(saved, 'filter', 'FORWARD');
      if (fwd.indexOf(`-A FORWARD -j ${CHAINS.forward}`) !== fwd.indexOf('-A FORWARD -j DOCKER-USER') + 1) forwardInPlace = false;
    }
    // Nothing differed and nobody committed while we read: the kernel is known again, as after a
    // forced render, so the next passes and add-only renders need no iptables-save.
    if (!problems.length && forwardInPlace && asApplied && gen !== undefined && (await this.generation()) === gen) this.settledGen = gen;
    return problems;
  }

  /** Whether `rendered` (each family's restore text) is exactly what the last renders sent. */
  private holdsRender(rendered: Record<IpFamily, string>): boolean {
    return ([4, 6] as const).every((family) => {
      const have = this.applied.get(family);
      const want = tableBlocks(rendered[family]);
      return !!have && have.size === want.size && [...want].every(([table, text]) => have.get(table) === text);
    });
  }

  /** Removes our jumps and chains entirely (used by tests and `tsnet` uninstall). */
  async removeAll(): Promise<void> {
    this.applied.clear();
    this.settledGen = undefined;
    for (const family of [4, 6] as const) {
      for (const [table, chain, match, target] of [['filter', 'FORWARD', [], CHAINS.forward] as const, ...HOOKS]) {
        while (await iptables(family, ['-t', table, '-D', chain, ...match, '-j', target]).then(() => true, () => false));
      }
      for (const [table, chain] of [['filter', CHAINS.forward], ['filter', CHAINS.iso1], ['filter', CHAINS.iso2], ['nat', CHAINS.postrouting], ['nat', CHAINS.dnat], ['raw', CHAINS.raw], ['raw', CHAINS.rawOut]] as const) {
        await iptables(family, ['-t', table, '-F', chain]).catch(() => undefined);
        await iptables(family, ['-t', table, '-X', chain]).catch(() => undefined);
      }
    }
  }

  /**
   * Makes the built-in chains jump to ours. One iptables-save answers every check (it was an
   * `iptables -S` and five `iptables -C` runs in a row, ~3 ms each here); only a jump that is
   * missing or out of place costs more runs. Our restores never touch built-in chains, so a save
   * taken before them in the same apply still tells the truth about the jumps.
   */
  private async ensureJumps(family: IpFamily, saved: string | undefined): Promise<void> {
    const text = saved ?? (await saveText(family));
    // FORWARD: our jump goes right after DOCKER-USER when Docker has one, so administrators'
    // DOCKER-USER rules filter our traffic too; otherwise first.
    let fwd = chainRules(text, 'filter', 'FORWARD');
    const at = (r: string[], line: string): number => r.findIndex((l) => l === line);
    const expected = (r: string[]): number => at(r, '-A FORWARD -j DOCKER-USER') + 1; // 0 when absent
    if (at(fwd, `-A FORWARD -j ${CHAINS.forward}`) !== expected(fwd)) {
      const rules = async (): Promise<string[]> =>
        (await iptables(family, ['-S', 'FORWARD'])).split('\n').filter((l) => l.startsWith('-A FORWARD'));
      while (at(fwd, `-A FORWARD -j ${CHAINS.forward}`) >= 0) {
        await iptables(family, ['-D', 'FORWARD', '-j', CHAINS.forward]);
        fwd = await rules();
      }
      await iptables(family, ['-I', 'FORWARD', String(expected(fwd) + 1), '-j', CHAINS.forward]);
    }
    for (const [table, chain, match, target] of HOOKS) {
      if (!jumpsTo(chainRules(text, table, chain), target)) await iptables(family, ['-t', table, '-I', chain, '1', ...match, '-j', target]);
    }
  }

}
