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
  const runs = opts.quick ? 3 : 30;
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
    // A remote-driver network that makes no interface: what dockerd spends on any user-defined
    // network whatever the driver does (its embedded resolver's set-up alone execs iptables 11
    // times in the container's namespace), shown beside the row to say where the time goes.
    sh('docker', ['network', 'create', '-d', 'tsnull', `${tag}-nl`]);
    const containers: string[] = [];
    try {
      const run = (net: string): number => timed(['run', '--rm', '--network', net, IMAGE, 'true']);
      const none: number[] = [];
      const ts: number[] = [];
      const dk: number[] = [];
      const nl: number[] = [];
      for (const net of ['none', `${tag}-ts`, `${tag}-dk`, `${tag}-nl`]) run(net); // warm-up
      // Rounds of three runs, in rotating order; each round's --network none run is the baseline
      // of the other two (paired differences: a slow stretch of the machine hits all three).
      const order = ['none', 'ts', 'dk', 'nl'] as const;
      for (let i = 0; i < runs; i++) {
        const round: Record<(typeof order)[number], number> = { none: 0, ts: 0, dk: 0, nl: 0 };
        for (let k = 0; k < order.length; k++) {
          const which = order[(i + k) % order.length]!;
          round[which] = run(which === 'none' ? 'none' : `${tag}-${which}`);
        }
        none.push(round.none);
        ts.push(round.ts - round.none);
        dk.push(round.dk - round.none);
        nl.push(round.nl - round.none);
      }
      // Publishing a port range: Docker's bridge starts a docker-proxy per port and family; tsnet
      // writes one DNAT rule, holds the ports and, on removal, flushes their flows in one dump.
      const span = opts.quick ? 20 : 100;
      const publish = (net: string, i: number): number => {
        const name = `${tag}-p${i}`;
        containers.push(name);
        const range = `21000-${21000 + span - 1}`;
        return timed(['run', '-d', '--name', name, '--network', net, '-p', `${range}:${range}`, '-p', `${range}:${range}/udp`, IMAGE, 'sleep', '600'])
          + timed(['rm', '-f', name]);
      };
      const pubRounds = opts.quick ? 1 : 3;
      const pubTs: number[] = [];
      const pubDk: number[] = [];
      for (let i = 0; i < pubRounds; i++) {
        pubTs.push(publish(`${tag}-ts`, i));
        pubDk.push(publish(`${tag}-dk`, i + 10));
      }
      const overheadTs = median(ts);
      const overheadDk = median(dk);
      return [
        { name: `docker network create, median ms (x${n})`, ours: median(ours.map((x) => x[0])), anchor: median(theirs.map((x) => x[0])), higherIsBetter: false, target: 1.25, anchorCommand: 'docker network create -d bridge --subnet … / docker network rm' },
        { name: `docker network rm, median ms (x${n})`, ours: median(ours.map((x) => x[1])), anchor: median(theirs.map((x) => x[1])), higherIsBetter: false, target: 1.25, anchorCommand: 'docker network rm <bridge network>' },
        {
          name: `docker run --rm: network overhead over --network none, median ms (x${runs})`, ours: overheadTs, anchor: overheadDk, higherIsBetter: false, target: 1.25,
          anchorCommand: `docker run --rm --network <docker bridge network> ${IMAGE} true, minus the --network none run of the same round (median none: ${median(none).toFixed(0)} ms)`,
          note: `dockerd's own share: a tsnull network (remote driver, no interface) adds ${median(nl).toFixed(0)} ms over none; the ratio can reach at most ${(median(dk) / median(nl)).toFixed(2)}x even if everything else cost nothing`,
        },
        {
          name: `docker run -d -p ${span} tcp + ${span} udp ports, then rm -f: ms (median of ${pubRounds})`, ours: median(pubTs), anchor: median(pubDk), higherIsBetter: false, target: null,
          anchorCommand: `the same on a docker bridge network (userland proxy on, Docker's default)`,
        },
      ];
    } finally {
      if (containers.length) sh('docker', ['rm', '-f', ...containers], { allowFail: true });
      sh('docker', ['network', 'rm', `${tag}-ts`, `${tag}-dk`, `${tag}-nl`], { allowFail: true });
    }
  } finally {
    await daemon.stop();
  }
}
