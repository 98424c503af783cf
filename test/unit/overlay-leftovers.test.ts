// What a host holds in the cluster store without a local endpoint: removed after the grace period,
// under the network's lock, and never while an endpoint is between its publish and its commit.

import { describe, expect, it } from 'vitest';
import { OverlayService } from '../../core/overlay-service.js';
import { silentLog } from '../helpers/fakes.js';

const NET = { id: 'net1', driver: 'tsoverlay', state: { cluster: 'blue' } };

/**
 * A network with endpoint "ep-new" being created: published to the cluster (the store below lists
 * it as this host's), committed to the local store only once the creation releases the network's
 * lock. `committed` says whether that has happened.
 */
function scene(opts: { creating: boolean }) {
  let committed = !opts.creating;
  const calls: string[] = [];
  const networks = {
    listNetworks: async () => [NET],
    listEndpoints: async () => (committed ? [{ id: 'ep-new' }] : []),
    // The creation holds the lock: whoever waits for it sees the endpoint committed.
    exclusive: async <T>(_id: string, fn: () => Promise<T>): Promise<T> => {
      committed = true;
      return fn();
    },
  };
  const cluster = {
    owned: async () => ({
      addresses: [{ ip: '10.9.0.5', endpoint: 'ep-new' }, { ip: '10.9.0.9', endpoint: 'ep-gone' }],
      endpoints: ['ep-new', 'ep-gone'],
    }),
    releaseAddress: async (_n: string, ip: string, ep: string) => void calls.push(`release ${ip} ${ep}`),
    withdrawEndpoint: async (_n: string, id: string) => void calls.push(`withdraw ${id}`),
    watch: () => () => undefined,
  };
  const svc = new OverlayService(networks as never, cluster as never, {} as never, {} as never, silentLog, 10_000);
  return { svc, calls };
}

describe('tsoverlay: this host\'s leftovers in the cluster store', () => {
  it('an endpoint between its publish and its commit is neither withdrawn nor loses its address', async () => {
    const { svc, calls } = scene({ creating: true });
    await svc.reconcileOwned(1_000);
    await svc.reconcileOwned(1_000 + 10_000); // grace over: only what is still a leftover under the lock goes
    expect(calls).toEqual(['release 10.9.0.9 ep-gone', 'withdraw ep-gone']);
  });

  it('a leftover goes only once it has been one for the grace period', async () => {
    const { svc, calls } = scene({ creating: false });
    await svc.reconcileOwned(1_000);
    await svc.reconcileOwned(1_000 + 9_999);
    expect(calls).toEqual([]);
    await svc.reconcileOwned(1_000 + 10_000);
    expect(calls).toEqual(['release 10.9.0.9 ep-gone', 'withdraw ep-gone']);
  });
});
