// Benchmarks through the real Docker CLI: network create/rm, and the network share of
// `docker run --rm` (time minus the same run with --network none), tsbridge against Docker's own
// bridge driver, same run.

import { ensureDocker, IMAGE, sh, startTsnet } from './lab.js';
import type { BenchOptions, BenchResult } from './types.js';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function timed(args: string[]): number {
  const t = performance.now();
  sh('docker', args);
  return performance.now() - t;
}

export async function benchDocker(opts: BenchOptions): Promise<BenchResult[]> {
  await ensureDocker();
  const n = opts.quick ? 3 : 20;
  const tag = `tsnbd${process.pid % 1000}`;
  const daemon = await startTsnet(undefined, ['--log-level', 'warn']);
  try {
    const createRm = (driverArgs: string[], i: number): [number, number] => {
      const name = `${tag}-n${i}`;
      const c = timed(['network', 'create', ...driverArgs, '--subnet', `10.252.${i}.0/24`, name]);
      const r = timed(['network', 'rm', name]);
      return [c, r];
    };
    const ours = Array.from({ length: n }, (_, i) => createRm(['-d', 'tsbridge', '--ipam-driver', 'tsipam'], i));
    const theirs = Array.from({ length: n }, (_, i) => createRm(['-d', 'bridge'], i + 100));

    sh('docker', ['network', 'create', '-d', 'tsbridge', '--ipam-driver', 'tsipam', '--subnet', '10.253.1.0/24', `${tag}-ts`]);
    sh('docker', ['network', 'create', '-d', 'bridge', '--subnet', '10.253.2.0/24', `${tag}-dk`]);
    try {
      const run = (net: string): number => timed(['run', '--rm', '--network', net, IMAGE, 'true']);
      const none: number[] = [];
      const ts: number[] = [];
      const dk: number[] = [];
      run('none'); // warm-up
      for (let i = 0; i < n; i++) {
        none.push(run('none'));
        ts.push(run(`${tag}-ts`));
        dk.push(run(`${tag}-dk`));
      }
      const overheadTs = median(ts) - median(none);
      const overheadDk = median(dk) - median(none);
      return [
        { name: `docker network create, median ms (x${n})`, ours: median(ours.map((x) => x[0])), anchor: median(theirs.map((x) => x[0])), higherIsBetter: false, target: 1.25, anchorCommand: 'docker network create -d bridge --subnet … / docker network rm' },
        { name: `docker network rm, median ms (x${n})`, ours: median(ours.map((x) => x[1])), anchor: median(theirs.map((x) => x[1])), higherIsBetter: false, target: 1.25, anchorCommand: 'docker network rm <bridge network>' },
        {
          name: `docker run --rm: network overhead over --network none, median ms (x${n})`, ours: overheadTs, anchor: overheadDk, higherIsBetter: false, target: 1.25,
          anchorCommand: `docker run --rm --network <docker bridge network> ${IMAGE} true, minus the same with --network none (median none: ${median(none).toFixed(0)} ms)`,
        },
      ];
    } finally {
      sh('docker', ['network', 'rm', `${tag}-ts`, `${tag}-dk`], { allowFail: true });
    }
  } finally {
    await daemon.stop();
  }
}
