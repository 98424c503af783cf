// Benchmark: dnsperf against tsnet's resolver and against Docker's embedded resolver
// (127.0.0.11 in a container on a Docker bridge network), same query files, same run: names of
// local containers, and upstream names (cached after the first query). The upstream is a
// dnsmasq in a test namespace, so no query ever leaves the machine.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDocker, hasCommand, IMAGE, makeOutsideHost, sh, startTsnet } from './lab.js';
import type { BenchOptions, BenchResult } from './types.js';

interface PerfResult {
  qps: number;
  p99ms: number;
  lost: number;
  completed: number;
}

/** Runs dnsperf inside a container's network namespace; p99 from its per-query (-v) lines. */
function dnsperf(pid: string, server: string, file: string, seconds: number): PerfResult {
  const out = sh('nsenter', ['-t', pid, '-n', 'dnsperf', '-s', server, '-d', file, '-l', String(seconds), '-q', '100', '-v']);
  if (process.env.TSNET_BENCH_DEBUG) console.error(out.split('\n').filter((l) => !l.startsWith('>')).join('\n'));
  const lat = [...out.matchAll(/^> \S+ .* ([0-9.]+)$/gm)].map((m) => Number(m[1]));
  lat.sort((a, b) => a - b);
  const p99 = lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))]! : NaN;
  return {
    qps: Number(/Queries per second:\s+([0-9.]+)/.exec(out)?.[1] ?? 0),
    completed: Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? 0),
    lost: Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? 0),
    p99ms: p99 * 1000,
  };
}

export async function benchDns(opts: BenchOptions): Promise<BenchResult[]> {
  if (!hasCommand('dnsperf')) {
    return [{ name: 'dns: local names (qps)', ours: null, anchor: null, higherIsBetter: true, target: 1.5, anchorCommand: 'dnsperf not installed (apt-get install dnsperf)' }];
  }
  await ensureDocker();
  const seconds = opts.quick ? 2 : 10;
  const tag = `tsnb${process.pid % 10000}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsnb-dns-'));
  const upstream = makeOutsideHost(`${tag}u`, '198.18.240.1', '198.18.240.2');
  const dnsmasq = sh('sh', ['-c', `ip netns exec ${tag}u dnsmasq --no-resolv --no-hosts --keep-in-foreground --listen-address=198.18.240.2 --bind-interfaces --address=/upstream.bench/203.0.113.9 --cache-size=1000 --pid-file= >/dev/null 2>&1 & echo $!`]).trim();
  const daemon = await startTsnet(undefined, ['--dns-upstream', '198.18.240.2', '--log-level', 'warn']);
  const cleanup: Array<() => void> = [];
  try {
    // tsnet: a tsbridge network with a target and a client container.
    sh('docker', ['network', 'create', '-d', 'tsbridge', '--ipam-driver', 'tsipam', '--subnet', '10.240.1.0/24', `${tag}-ts`]);
    cleanup.push(() => sh('docker', ['network', 'rm', `${tag}-ts`], { allowFail: true }));
    // Docker: a user-defined bridge network (embedded DNS at 127.0.0.11), forwarding to the same upstream.
    sh('docker', ['network', 'create', '--subnet', '10.240.2.0/24', `${tag}-dk`]);
    cleanup.push(() => sh('docker', ['network', 'rm', `${tag}-dk`], { allowFail: true }));
    for (const [net, suffix] of [[`${tag}-ts`, 'ts'], [`${tag}-dk`, 'dk']] as const) {
      for (const role of ['target', 'client']) {
        const name = `${tag}-${suffix}-${role}`;
        sh('docker', ['run', '-d', '--name', name, '--network', net, '--dns', '198.18.240.2', IMAGE, 'sleep', '3600']);
        cleanup.unshift(() => sh('docker', ['rm', '-f', name], { allowFail: true }));
      }
    }
    const pid = (c: string): string => sh('docker', ['inspect', '-f', '{{.State.Pid}}', c]).trim();
    const localFile = join(dir, 'local.txt');
    const upstreamFile = join(dir, 'upstream.txt');
    writeFileSync(upstreamFile, 'upstream.bench A\n');
    const files = {
      ts: (): string => (writeFileSync(localFile, `${tag}-ts-target A\n`), localFile),
      dk: (): string => (writeFileSync(localFile, `${tag}-dk-target A\n`), localFile),
    };
    // Wait until tsnet learnt the target's name from Docker (asynchronous by design).
    const tsPid = pid(`${tag}-ts-client`);
    const dkPid = pid(`${tag}-dk-client`);
    for (let i = 0; i < 50; i++) {
      const out = sh('nsenter', ['-t', tsPid, '-n', 'nslookup', `${tag}-ts-target`, '10.240.1.1'], { allowFail: true });
      if (/Name:[\s\S]*Address: 10\.240\.1\./.test(out)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const oursLocal = dnsperf(tsPid, '10.240.1.1', files.ts(), seconds);
    const dockerLocal = dnsperf(dkPid, '127.0.0.11', files.dk(), seconds);
    const oursUp = dnsperf(tsPid, '10.240.1.1', upstreamFile, seconds);
    const dockerUp = dnsperf(dkPid, '127.0.0.11', upstreamFile, seconds);
    const row = (what: string, o: PerfResult, d: PerfResult, server: string): BenchResult[] => [
      {
        name: `dns: ${what} (queries/s)`,
        ours: o.qps, anchor: d.qps, higherIsBetter: true, target: 1.5,
        anchorCommand: `nsenter -t <client pid> -n dnsperf -s ${server} -d <file> -l ${seconds} -q 100 -v (lost: ours ${o.lost}/${o.completed + o.lost}, docker ${d.lost}/${d.completed + d.lost})`,
      },
      {
        name: `dns: ${what} p99 latency (ms)`,
        ours: o.p99ms, anchor: d.p99ms, higherIsBetter: false, target: 1,
        anchorCommand: 'same runs; p99 of dnsperf -v per-query latencies',
      },
    ];
    return [...row('local names', oursLocal, dockerLocal, '127.0.0.11'), ...row('cached upstream names', oursUp, dockerUp, '127.0.0.11')];
  } finally {
    for (const c of cleanup) c();
    await daemon.stop();
    sh('kill', [dnsmasq], { allowFail: true });
    upstream.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}
