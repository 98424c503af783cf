// Benchmark: CNI ADD then DEL of N containers (fresh namespaces) with tsbridge+tsipam — through
// the daemon (the installed plugin's fast path) and standalone — and with the reference
// bridge+host-local (ipMasq on), in the same run. p50/p99 of each verb.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetns, deleteNetns } from '../kernel/netns.js';
import { ROOT, sh, startTsnet } from './lab.js';
import type { BenchOptions, BenchResult } from './types.js';

const REF = '/usr/lib/cni';

interface Timing {
  add: number[];
  del: number[];
}

export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
};

/** Runs one CNI plugin call and returns its wall time in ms; a failure throws. */
export function invoke(bin: string, command: string, conf: object, env: Record<string, string>): number {
  const t = performance.now();
  const r = spawnSync(bin, [], { input: JSON.stringify(conf), encoding: 'utf8', env: { PATH: process.env.PATH, CNI_COMMAND: command, ...env } });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${bin} ${command} failed: ${r.stdout}${r.stderr}`);
  return ms;
}

async function run(n: number, bin: string, conf: object, env: Record<string, string>, tag: string): Promise<Timing> {
  const t: Timing = { add: [], del: [] };
  const nss = await Promise.all(Array.from({ length: n }, (_, i) => createNetns(`${tag}${i}`)));
  try {
    for (const [i, ns] of nss.entries()) t.add.push(invoke(bin, 'ADD', conf, { ...env, CNI_CONTAINERID: `${tag}${i}`, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }));
    for (const [i, ns] of nss.entries()) t.del.push(invoke(bin, 'DEL', conf, { ...env, CNI_CONTAINERID: `${tag}${i}`, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }));
  } finally {
    await Promise.all(nss.map((ns) => deleteNetns(ns)));
  }
  return t;
}

export async function benchCni(opts: BenchOptions): Promise<BenchResult[]> {
  const n = opts.quick ? 10 : 200;
  const tag = `tsnbc${process.pid % 1000}`;
  const binDir = mkdtempSync(join(tmpdir(), 'tsnb-cnibin-'));
  sh(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), 'cni', 'install', '--bin-dir', binDir]);
  const daemon = await startTsnet(undefined, ['--log-level', 'warn']);
  const stateDir = daemon.stateDir;
  const ours = (sub: string) => ({
    cniVersion: '1.0.0', name: `${tag}-${sub}`, type: 'tsbridge', bridge: `${tag}${sub}`, isGateway: true, isDefaultGateway: true, ipMasq: true,
    ipam: { type: 'tsipam', subnet: sub === 'd' ? '10.248.0.0/16' : '10.249.0.0/16' },
  });
  const ref = {
    cniVersion: '1.0.0', name: `${tag}-ref`, type: 'bridge', bridge: `${tag}r`, isGateway: true, isDefaultGateway: true, ipMasq: true,
    ipam: { type: 'host-local', subnet: '10.250.0.0/16', dataDir: join(binDir, 'host-local') },
  };
  try {
    const viaDaemon = await run(n, join(binDir, 'tsbridge'), ours('d'), { CNI_PATH: binDir, TSNET_STATE_DIR: stateDir }, `${tag}d`);
    const standalone = await run(n, join(binDir, 'tsbridge'), ours('s'), { CNI_PATH: binDir, TSNET_STATE_DIR: stateDir, TSNET_CNI_SOCKET: '/nonexistent' }, `${tag}s`);
    const reference = await run(n, `${REF}/bridge`, ref, { CNI_PATH: REF }, `${tag}r`);
    const row = (what: string, verb: 'add' | 'del', p: number, t: Timing): BenchResult => ({
      name: `cni: ${verb.toUpperCase()} p${p * 100} ms, ${what} (x${n})`,
      // The target is for the daemon (p50 at most 0.5x the reference's); standalone
      // figures are to be reported (each call starts Node, ~100 ms on its own here).
      ours: pct(t[verb], p), anchor: pct(reference[verb], p), higherIsBetter: false, target: what === 'standalone' ? null : p === 0.5 ? 2 : 1,
      anchorCommand: `${REF}/bridge with host-local, ipMasq true (same namespaces count, same machine)`,
    });
    return [
      row('daemon', 'add', 0.5, viaDaemon), row('daemon', 'add', 0.99, viaDaemon),
      row('daemon', 'del', 0.5, viaDaemon), row('daemon', 'del', 0.99, viaDaemon),
      row('standalone', 'add', 0.5, standalone), row('standalone', 'del', 0.5, standalone),
    ];
  } finally {
    await daemon.stop();
    sh('ip', ['link', 'del', `${tag}r`], { allowFail: true }); // the reference bridge leaves its bridge
    rmSync(binDir, { recursive: true, force: true });
  }
}
