// Flushes conntrack entries of a removed port mapping, so a new container on the same host port
// gets new flows instead of the old container's (UDP flows never end by themselves). Uses the
// conntrack tool from Debian's conntrack package.

import { execFile } from 'node:child_process';

export interface ConntrackMatch {
  proto: 'tcp' | 'udp' | 'sctp';
  family: 4 | 6;
  hostPort: number;
  hostPortEnd: number;
}

export async function flushConntrack(m: ConntrackMatch): Promise<void> {
  for (let port = m.hostPort; port <= m.hostPortEnd; port++) {
    await new Promise<void>((resolve, reject) => {
      execFile('conntrack', ['-D', '-f', m.family === 4 ? 'ipv4' : 'ipv6', '-p', m.proto, '--orig-port-dst', String(port)], (err, _out, stderr) => {
        // Exit 1 with "0 flow entries have been deleted" means there was nothing to flush.
        if (err && !/0 flow entries/.test(stderr)) reject(new Error(`conntrack -D failed: ${stderr.trim() || err.message}`));
        else resolve();
      });
    });
  }
}
