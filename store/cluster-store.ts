// What the daemon and the CLI need to know about the cluster store without loading its client:
// etcd3 brings gRPC and protobuf (~120 ms and ~30 MB of a process here), so store/etcd-cluster.ts
// is imported only when a --cluster-store is given.

import { NetError } from '../kernel/errors.js';

/** Owner of addresses tsipam took for Docker before the endpoint (and its id) exists. */
export const IPAM_OWNER = 'ipam';

/** Parses "etcd://h:p,h:p" (or "h:p,h:p") into endpoints. */
export function parseClusterStore(url: string): string[] {
  const rest = url.replace(/^etcd:\/\//, '');
  if (rest === url && url.includes('://')) throw new NetError('INVALID_ARGUMENT', `--cluster-store must be etcd://HOST:PORT[,HOST:PORT…], not ${url}`);
  const eps = rest.split(',').map((s) => s.trim()).filter(Boolean);
  if (!eps.length || eps.some((e) => !/^[\w.-]+:\d+$|^\[[0-9a-f:]+\]:\d+$/i.test(e))) {
    throw new NetError('INVALID_ARGUMENT', `--cluster-store must be etcd://HOST:PORT[,HOST:PORT…], not ${url}`);
  }
  return eps;
}
