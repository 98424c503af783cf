// Datapath: iperf3 between two containers on one tsbridge network and on one Docker bridge
// network, same run (iperf3 from Debian runs inside the containers' namespaces through nsenter).

import { ensureDocker, hasCommand, IMAGE, sh, startTsnet } from './lab.js';
import type { BenchOptions, BenchResult } from './types.js';

/** iperf3 from the client's namespace (the host's when clientPid is null) to serverIp:port, a one-shot server in the server's. */
function throughputGbps(serverPid: string, clientPid: string | null, serverIp: string, seconds: number, port = 5299): number {
  const server = sh('sh', ['-c', `nsenter -t ${serverPid} -n iperf3 -s -1 -D -p 5299 && echo started`]);
  if (!server.includes('started')) throw new Error('iperf3 server did not start');
  for (let i = 0; i < 20; i++) {
    try {
      const client = ['iperf3', '-c', serverIp, '-p', String(port), '-t', String(seconds), '-J'];
      const out = JSON.parse(clientPid ? sh('nsenter', ['-t', clientPid, '-n', ...client]) : sh(client[0]!, client.slice(1)));
      return out.end.sum_received.bits_per_second / 1e9;
    } catch {
      sh('sleep', ['0.2']);
    }
  }
  throw new Error('iperf3 client failed');
}

export async function benchDatapath(opts: BenchOptions): Promise<BenchResult[]> {
  if (!hasCommand('iperf3')) {
    return [{ name: 'datapath: iperf3 (Gbit/s)', ours: null, anchor: null, higherIsBetter: true, target: 0.97, anchorCommand: 'iperf3 not installed' }];
  }
  await ensureDocker();
  const seconds = opts.quick ? 1 : 5;
  const tag = `tsnbp${process.pid % 1000}`;
  const daemon = await startTsnet(undefined, ['--log-level', 'warn']);
  const made: string[] = [];
  try {
    sh('docker', ['network', 'create', '-d', 'tsbridge', '--ipam-driver', 'tsipam', '--subnet', '10.241.9.0/24', `${tag}-ts`]);
    sh('docker', ['network', 'create', '--subnet', '10.241.10.0/24', `${tag}-dk`]);
    const pair = (net: string): [string, string, string] => {
      const [a, b] = [`${net}-a`, `${net}-b`];
      for (const c of [a, b]) {
        // a publishes its iperf3 port: the host-to-published-port rows below.
        const publish = c === a ? ['-p', `${net.endsWith('-ts') ? 18298 : 18299}:5299`] : [];
        sh('docker', ['run', '-d', '--name', c, '--network', net, ...publish, IMAGE, 'sleep', '600']);
        made.push(c);
      }
      const pid = (c: string): string => sh('docker', ['inspect', '-f', '{{.State.Pid}}', c]).trim();
      const ip = sh('docker', ['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', a]).trim();
      return [pid(a), pid(b), ip];
    };
    const [tsA, tsB, tsIp] = pair(`${tag}-ts`);
    const [dkA, dkB, dkIp] = pair(`${tag}-dk`);
    // Alternating rounds, medians: one 5 s sample of each varies by ±10% on a shared machine.
    const rounds = opts.quick ? 1 : 5;
    const ours: number[] = [];
    const theirs: number[] = [];
    // From the host to a published port: 127.0.0.1 is NATed by the kernel here and relayed by
    // docker-proxy there; [::1] is relayed on both sides (our userland relay against docker-proxy).
    const lo4 = { ours: [] as number[], theirs: [] as number[] };
    const lo6 = { ours: [] as number[], theirs: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      ours.push(throughputGbps(tsA, tsB, tsIp, seconds));
      theirs.push(throughputGbps(dkA, dkB, dkIp, seconds));
      lo4.ours.push(throughputGbps(tsA, null, '127.0.0.1', seconds, 18298));
      lo4.theirs.push(throughputGbps(dkA, null, '127.0.0.1', seconds, 18299));
      lo6.ours.push(throughputGbps(tsA, null, '::1', seconds, 18298));
      lo6.theirs.push(throughputGbps(dkA, null, '::1', seconds, 18299));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    return [{
      name: `datapath: iperf3 TCP container to container, median of ${rounds} x ${seconds} s (Gbit/s)`, ours: median(ours), anchor: median(theirs), higherIsBetter: true, target: 0.97,
      anchorCommand: 'nsenter -t <a> -n iperf3 -s; nsenter -t <b> -n iperf3 -c <a> -J, on a Docker bridge network',
    }, {
      name: `datapath: host to a published port at 127.0.0.1, median of ${rounds} x ${seconds} s (Gbit/s)`, ours: median(lo4.ours), anchor: median(lo4.theirs), higherIsBetter: true, target: null,
      anchorCommand: 'iperf3 -c 127.0.0.1 -p <published> on a Docker bridge network (docker-proxy; ours: kernel NAT)',
    }, {
      name: `datapath: host to a published port at [::1], median of ${rounds} x ${seconds} s (Gbit/s)`, ours: median(lo6.ours), anchor: median(lo6.theirs), higherIsBetter: true, target: null,
      anchorCommand: 'iperf3 -c ::1 -p <published> on a Docker bridge network (docker-proxy; ours: the userland relay)',
    }];
  } finally {
    for (const c of made) sh('docker', ['rm', '-f', c], { allowFail: true });
    sh('docker', ['network', 'rm', `${tag}-ts`, `${tag}-dk`], { allowFail: true });
    await daemon.stop();
  }
}
