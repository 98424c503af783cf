#!/usr/bin/env node
// `npm run testbed -- up N | down | status`: the multi-host lab of bench/cluster-lab.ts for people.
// Everything is named tstb…; `down` removes every trace.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterLab } from './cluster-lab.js';
import { ROOT } from './lab.js';

const PREFIX = 'tstb';
const opts = { prefix: PREFIX, net: 214, etcdPort: 23990, leaseTtl: 5, graceSeconds: 60 };
const [cmd, arg] = process.argv.slice(2);

function usage(): number {
  console.error('usage: npm run testbed -- up N     build N namespace hosts on an underlay bridge, with etcd and a tsnet daemon each\n       npm run testbed -- status  what is running\n       npm run testbed -- down    remove every trace');
  return 2;
}

async function main(): Promise<number> {
  if (cmd === 'down') {
    ClusterLab.down(PREFIX);
    console.log('testbed removed');
    return 0;
  }
  if (cmd === 'status') {
    const f = `/run/tsnet-lab-${PREFIX}.json`;
    if (!existsSync(f)) {
      console.log('no testbed');
      return 1;
    }
    console.log(readFileSync(f, 'utf8'));
    return 0;
  }
  if (cmd !== 'up') return usage();
  const n = Number(arg ?? '2');
  if (!Number.isInteger(n) || n < 1 || n > 50) return usage();
  const lab = new ClusterLab(opts);
  await lab.up(n);
  const shim = join(ROOT, 'build/Release/tsnet-cni-shim');
  console.log(`testbed up: underlay ${lab.underlay} (${lab.gatewayIp}/24), etcd ${lab.etcdUrl}, ${n} hosts\n`);
  for (const h of lab.hosts) {
    console.log(`host ${h.index}: namespace ${h.ns}, underlay address ${h.ip}, daemon pid ${h.pid}, log ${join(h.dir, 'daemon.log')}`);
    console.log(`  enter it:            ip netns exec ${h.ns} bash`);
    console.log(`  its plugin sockets:  ${h.pluginDir}/{tsoverlay,tsipam,tsbridge}.sock   (CNI socket ${h.cniSocket})`);
  }
  const h = lab.hosts[0]!;
  console.log(`
attach a container (a namespace) to the overlay network "demo" on host ${h.index} through CNI:
  ip netns add ${PREFIX}c1
  echo '{"cniVersion":"1.1.0","name":"demo","type":"tsoverlay","ipam":{"type":"tsipam","subnet":"10.66.0.0/24"}}' | \\
    env CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/${PREFIX}c1 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \\
        TSNET_CNI_SOCKET=${h.cniSocket} TSNET_STATE_DIR=${h.stateDir} \\
        bash -c 'exec -a tsoverlay ${shim}'
do the same with host 2's socket and state dir for a second container, then:
  ip netns exec ${PREFIX}c1 ping <the other container's address>
or drive the Docker protocol with curl on a host's sockets (see README, "Multi-host").
remove it all:  npm run testbed -- down`);
  return 0;
}

process.exitCode = await main();
