// Overlay: iperf3 between containers on two lab hosts through tsoverlay, and through a VXLAN pair
// built by hand with iproute2 on two more lab hosts (same kernel, same underlay bridge, same
// bridge + veth shape, same MTU), rounds alternated; and the time from Join on one host until a
// ping from a container on another host gets an answer, over many attachments.

import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { ClusterLab, type LabHost } from './cluster-lab.js';
import { hasCommand, sh } from './lab.js';
import type { BenchOptions, BenchResult } from './types.js';

const P = 'tsnb';

function iperf(serverNs: string, clientNs: string, serverIp: string, seconds: number): number {
  sh('ip', ['netns', 'exec', serverNs, 'iperf3', '-s', '-1', '-D', '-p', '5298']);
  for (let i = 0; i < 20; i++) {
    const r = spawnSync('ip', ['netns', 'exec', clientNs, 'iperf3', '-c', serverIp, '-p', '5298', '-t', String(seconds), '-J'], { encoding: 'utf8' });
    if (r.status === 0) return JSON.parse(r.stdout).end.sum_received.bits_per_second / 1e9;
    sh('sleep', ['0.2']);
  }
  throw new Error('iperf3 client failed');
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;

/** The anchor: two namespace hosts with a hand-made point-to-point VXLAN in a bridge, a container each. */
function handMadePair(lab: ClusterLab): { a: string; b: string; bIp: string } {
  const hosts = [{ ns: `${P}x1`, ip: `10.${lab.opts.net}.0.101`, c: `${P}xc1`, cip: '10.218.0.1' }, { ns: `${P}x2`, ip: `10.${lab.opts.net}.0.102`, c: `${P}xc2`, cip: '10.218.0.2' }];
  hosts.forEach((h, i) => {
    const peer = hosts[1 - i]!;
    sh('ip', ['netns', 'add', h.ns]);
    sh('ip', ['link', 'add', `${P}ux${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
    sh('ip', ['link', 'set', `${P}ux${i + 1}`, 'master', lab.underlay, 'up']);
    sh('ip', ['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', h.ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', h.ns, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', ['-n', h.ns, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '999', 'local', h.ip, 'remote', peer.ip, 'dstport', '4789', 'dev', 'eth0']);
    sh('ip', ['-n', h.ns, 'link', 'set', 'vx0', 'master', 'br0', 'up']);
    sh('ip', ['-n', h.ns, 'link', 'set', 'br0', 'up']);
    sh('ip', ['netns', 'add', h.c]);
    sh('ip', ['-n', h.ns, 'link', 'add', 'v0', 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', '1450', 'netns', h.c]);
    sh('ip', ['-n', h.ns, 'link', 'set', 'v0', 'master', 'br0', 'up']);
    sh('ip', ['-n', h.c, 'addr', 'add', `${h.cip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', h.c, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', h.c, 'link', 'set', 'lo', 'up']);
  });
  return { a: hosts[0]!.c, b: hosts[1]!.c, bIp: hosts[1]!.cip };
}

/** Join (the protocol call) until a ping from a container on another host is answered, in ms. */
async function joinToPing(lab: ClusterLab, from: string, h: LabHost, net: { networkId: string; poolId: string }, n: number): Promise<number[]> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const c = await lab.attachCnm(h, net, `${P}j${i}`);
    const r = spawnSync('ip', ['netns', 'exec', from, 'ping', '-c', '1', '-i', '0.005', '-w', '3', c.address.split('/')[0]!], { encoding: 'utf8' });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`no answer from ${c.address} within 3 s`);
    lat.push(ms);
  }
  return lat;
}

export async function benchOverlay(opts: BenchOptions): Promise<BenchResult[]> {
  const missing = ['etcd', 'iperf3'].filter((c) => !hasCommand(c));
  if (missing.length) {
    return [{ name: 'overlay', ours: null, anchor: null, higherIsBetter: true, target: 0.95, anchorCommand: `${missing.join(', ')} not installed` }];
  }
  const lab = new ClusterLab({ prefix: P, net: 215, etcdPort: 24090, leaseTtl: 5 });
  const seconds = opts.quick ? 1 : 5;
  const rounds = opts.quick ? 1 : 5;
  const joins = opts.quick ? 10 : 100;
  try {
    await lab.up(2);
    const [h1, h2] = [lab.host(1), lab.host(2)];
    const n1 = await lab.createNetworkCnm(h1, 'bench', '10.219.0.0/16');
    const n2 = await lab.createNetworkCnm(h2, 'bench', '10.219.0.0/16');
    const a = await lab.attachCnm(h1, n1, `${P}ca`);
    const b = await lab.attachCnm(h2, n2, `${P}cb`);
    sh('ip', ['netns', 'exec', a.ns, 'ping', '-c', '1', '-w', '5', b.address.split('/')[0]!]);
    const anchor = handMadePair(lab);
    sh('ip', ['netns', 'exec', anchor.a, 'ping', '-c', '1', '-w', '5', anchor.bIp]);
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      ours.push(iperf(b.ns, a.ns, b.address.split('/')[0]!, seconds));
      theirs.push(iperf(anchor.b, anchor.a, anchor.bIp, seconds));
    }
    const lat = await joinToPing(lab, a.ns, h2, n2, joins);
    return [
      {
        name: `overlay: iperf3 TCP across two hosts, median of ${rounds} x ${seconds} s (Gbit/s)`,
        ours: median(ours), anchor: median(theirs), higherIsBetter: true, target: 0.95,
        anchorCommand: 'per host: ip link add vx0 type vxlan id 999 local <me> remote <peer> dstport 4789; bridge br0 with vx0 and a veth (mtu 1450) into the container; iperf3 -c between the containers',
      },
      {
        name: `overlay: Join on host 2 until a ping from host 1 is answered, p50 over ${joins} (ms)`,
        ours: pct(lat, 50), anchor: null, higherIsBetter: false, target: 1,
        anchorCommand: 'no anchor: absolute target',
        note: `p99 ${pct(lat, 99).toFixed(1)} ms (target p99 < 1000 ms: ${pct(lat, 99) < 1000 ? 'met' : 'not met'})`,
      },
      {
        name: `overlay: Join on host 2 until a ping from host 1 is answered, p99 over ${joins} (ms)`,
        ours: pct(lat, 99), anchor: 1000, higherIsBetter: false, target: 1,
        anchorCommand: 'the target itself (1,000 ms), not a measured anchor',
      },
    ];
  } finally {
    lab.down();
  }
}
