// Scale: attach N containers (fresh namespaces, through CNI with the daemon running) to one
// tsbridge network, and the same with the reference bridge + host-local, same run. Reports attach
// latency p50/p99 around 10, 100 and 1,000 endpoints, the daemon's RSS idle and with N endpoints,
// and draws attach latency against endpoint count for both (SVG).

import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetns, deleteNetns } from '../kernel/netns.js';
import { ROOT, sh, startTsnet } from './lab.js';
import { invoke, pct } from './cni.js';
import type { BenchOptions, BenchResult } from './types.js';

const REF = '/usr/lib/cni';

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function attachAll(n: number, bin: string, conf: object, env: Record<string, string>, nss: Array<{ path: string }>, tag: string, command: string): number[] {
  return nss.slice(0, n).map((ns, i) => invoke(bin, command, conf, { ...env, CNI_CONTAINERID: `${tag}${i}`, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }));
}

/** Latency percentile over the 10 attachments that brought the network to `at` endpoints. */
function around(lat: number[], at: number, p: number): number {
  return pct(lat.slice(Math.max(0, at - 10), at), p);
}

function svg(series: Array<{ name: string; color: string; lat: number[] }>): string {
  const W = 720, H = 360, P = 50;
  const n = Math.max(...series.map((s) => s.lat.length));
  const ymax = Math.max(...series.flatMap((s) => s.lat)) * 1.1;
  const x = (i: number) => P + ((W - 2 * P) * i) / Math.max(1, n - 1);
  const y = (v: number) => H - P - ((H - 2 * P) * v) / ymax;
  const lines = series.map((s) => `<polyline fill="none" stroke="${s.color}" stroke-width="1" points="${s.lat.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`);
  const legend = series.map((s, i) => `<text x="${P + 10}" y="${P + 15 + i * 16}" fill="${s.color}" font-size="12">${s.name}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<line x1="${P}" y1="${H - P}" x2="${W - P}" y2="${H - P}" stroke="black"/><line x1="${P}" y1="${P}" x2="${P}" y2="${H - P}" stroke="black"/>
<text x="${W / 2}" y="${H - 12}" text-anchor="middle" font-size="12">endpoints on the network</text>
<text x="14" y="${H / 2}" font-size="12" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">attach latency (ms)</text>
<text x="${P - 6}" y="${y(0)}" font-size="10" text-anchor="end">0</text><text x="${P - 6}" y="${y(ymax / 1.1) + 4}" font-size="10" text-anchor="end">${(ymax / 1.1).toFixed(0)}</text>
<text x="${x(n - 1)}" y="${H - P + 14}" font-size="10" text-anchor="middle">${n}</text>
${lines.join('\n')}
${legend.join('\n')}
</svg>`;
}

export async function benchScale(opts: BenchOptions): Promise<BenchResult[]> {
  const n = opts.quick ? 20 : 1000;
  const tag = `tsnbs${process.pid % 1000}`;
  const binDir = mkdtempSync(join(tmpdir(), 'tsnb-scalebin-'));
  sh(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), 'cni', 'install', '--bin-dir', binDir]);
  const daemon = await startTsnet(undefined, ['--log-level', 'warn']);
  const pid = daemon.proc.pid!;
  const nss = await Promise.all(Array.from({ length: n }, (_, i) => createNetns(`${tag}${i}`)));
  try {
    const idle = rssMb(pid);
    const ours = { cniVersion: '1.0.0', name: `${tag}-o`, type: 'tsbridge', bridge: `${tag}o`, isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'tsipam', subnet: '10.128.0.0/16' } };
    const ref = { cniVersion: '1.0.0', name: `${tag}-r`, type: 'bridge', bridge: `${tag}r`, isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'host-local', subnet: '10.129.0.0/16', dataDir: join(binDir, 'hl') } };
    const oursLat = attachAll(n, join(binDir, 'tsbridge'), ours, { CNI_PATH: binDir, TSNET_STATE_DIR: daemon.stateDir }, nss, `${tag}o`, 'ADD');
    const loaded = rssMb(pid);
    attachAll(n, join(binDir, 'tsbridge'), ours, { CNI_PATH: binDir, TSNET_STATE_DIR: daemon.stateDir }, nss, `${tag}o`, 'DEL');
    const refLat = attachAll(n, `${REF}/bridge`, ref, { CNI_PATH: REF }, nss.map((ns) => ns), `${tag}r`, 'ADD');
    attachAll(n, `${REF}/bridge`, ref, { CNI_PATH: REF }, nss, `${tag}r`, 'DEL');
    writeFileSync('bench-attach-latency.svg', svg([
      { name: 'tsbridge + tsipam (daemon)', color: '#1f77b4', lat: oursLat },
      { name: 'reference bridge + host-local', color: '#d62728', lat: refLat },
    ]));
    const marks = [10, 100, 1000].filter((m) => m <= n);
    const rows: BenchResult[] = marks.flatMap((m) => [0.5, 0.99].map((p) => ({
      name: `scale: attach p${p * 100} ms around endpoint ${m}`,
      ours: around(oursLat, m, p), anchor: around(refLat, m, p), higherIsBetter: false, target: 1,
      anchorCommand: `${REF}/bridge + host-local (ipMasq), CNI ADD into fresh namespaces; chart: bench-attach-latency.svg`,
    })));
    rows.push({
      name: `daemon RSS MB: idle ${idle.toFixed(0)}, with ${n} endpoints`, ours: loaded, anchor: null, higherIsBetter: false, target: 1,
      anchorCommand: 'none (footprint is reported, not compared)',
    });
    const first = oursLat.slice(0, 10).sort((a, b) => a - b)[5]!;
    const last = oursLat.slice(-10).sort((a, b) => a - b)[5]!;
    rows.push({ name: `scale: attach p50 at endpoint ${n} / at endpoint 10 (ours)`, ours: last / first, anchor: 1.5, higherIsBetter: false, target: 1, anchorCommand: 'issue 11 budget: within 1.5x of the 10th' });
    return rows;
  } finally {
    await daemon.stop();
    sh('ip', ['link', 'del', `${tag}r`], { allowFail: true });
    await Promise.all(nss.map((ns) => deleteNetns(ns)));
    rmSync(binDir, { recursive: true, force: true });
  }
}
