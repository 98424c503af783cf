// The sweep for what Docker forgot: only networks Docker's list has held, never CNI ones, and only
// what two answers in a row miss. Docker is a small HTTP server on a unix socket here.

import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DockerSync } from '../../cnm/docker-sync.js';
import type { NetworkService } from '../../core/network-service.js';
import { silentLog } from '../helpers/fakes.js';

interface FakeNet { id: string; seenByDocker?: boolean; eps: string[] }

/** Docker's answers: network id → endpoint ids joined; `up` false makes every call fail. */
function fakeDocker(state: { up: boolean; nets: Map<string, string[]> }): Promise<{ socket: string; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'tsnt-dsync-'));
  const socket = join(dir, 'docker.sock');
  const server: Server = createServer((req, res) => {
    if (!state.up) return res.writeHead(500).end('{"message":"down"}');
    const url = req.url ?? '';
    if (url === '/v1.41/networks') return res.end(JSON.stringify([...state.nets.keys()].map((Id) => ({ Id, Name: Id }))));
    const id = decodeURIComponent(url.replace('/v1.41/networks/', ''));
    const eps = state.nets.get(id);
    if (!eps) return res.writeHead(404).end('{"message":"no such network"}');
    res.end(JSON.stringify({ Id: id, Name: id, Containers: Object.fromEntries(eps.map((e, i) => [`c${i}`, { Name: `c${i}`, EndpointID: e }])) }));
  });
  return new Promise((resolve) => server.listen(socket, () => resolve({ socket, close: () => { server.close(); rmSync(dir, { recursive: true, force: true }); } })));
}

function fakeService(nets: FakeNet[]) {
  const calls: string[] = [];
  const svc = {
    listNetworks: async () => nets.map((n) => ({ id: n.id, seenByDocker: n.seenByDocker, spec: { ipv4: [], ipv6: [] } })),
    listEndpoints: async (id: string) => (nets.find((n) => n.id === id)?.eps ?? []).map((e) => ({ id: e, networkId: id })),
    markSeenByDocker: async (id: string) => {
      nets.find((n) => n.id === id)!.seenByDocker = true;
      calls.push(`seen ${id}`);
    },
    deleteEndpoint: async (net: string, ep: string) => {
      const n = nets.find((x) => x.id === net)!;
      n.eps = n.eps.filter((e) => e !== ep);
      calls.push(`delete endpoint ${ep}`);
    },
    deleteNetwork: async (id: string) => {
      nets.splice(nets.findIndex((n) => n.id === id), 1);
      calls.push(`delete network ${id}`);
    },
  };
  return { svc: svc as unknown as NetworkService, calls };
}

describe('DockerSync', () => {
  let docker: { socket: string; close(): void } | undefined;
  afterEach(() => docker?.close());

  it('removes a network Docker held and no longer has, on the second sweep, endpoints first', async () => {
    const state = { up: true, nets: new Map([['net-a', ['ep-1']]]) };
    docker = await fakeDocker(state);
    const { svc, calls } = fakeService([{ id: 'net-a', eps: ['ep-1'] }, { id: 'net-api', eps: ['ep-x'] }, { id: 'cni-pods', eps: ['ep-c'] }]);
    const sync = new DockerSync(svc, undefined, silentLog, docker.socket);
    await sync.sweep();
    expect(calls).toEqual(['seen net-a']); // net-api: never in Docker's list, so not Docker's to forget
    state.nets.delete('net-a');
    expect(await sync.sweep()).toEqual({ networks: [], endpoints: [] }); // missing once: could be a moment
    expect(await sync.sweep()).toEqual({ networks: ['net-a'], endpoints: ['ep-1'] });
    expect(calls).toEqual(['seen net-a', 'delete endpoint ep-1', 'delete network net-a']);
    // However long they stay away from Docker, the others are left alone.
    await sync.sweep();
    expect(calls).toHaveLength(3);
  });

  it('removes only the endpoints Docker no longer lists, once two answers in a row miss them', async () => {
    const state = { up: true, nets: new Map([['net-a', ['ep-1', 'ep-2']]]) };
    docker = await fakeDocker(state);
    const { svc, calls } = fakeService([{ id: 'net-a', eps: ['ep-1', 'ep-2'] }]);
    const sync = new DockerSync(svc, undefined, silentLog, docker.socket);
    await sync.sweep();
    state.nets.set('net-a', ['ep-1']);
    await sync.sweep();
    // Docker stops answering: the next answer starts the count again.
    state.up = false;
    await sync.sweep();
    state.up = true;
    await sync.sweep();
    expect(calls).toEqual(['seen net-a']);
    expect(await sync.sweep()).toEqual({ networks: [], endpoints: ['ep-2'] });
    expect(calls).toEqual(['seen net-a', 'delete endpoint ep-2']);
  });

  it('an endpoint back in Docker’s list before the second sweep stays', async () => {
    const state = { up: true, nets: new Map([['net-a', ['ep-1']]]) };
    docker = await fakeDocker(state);
    const { svc, calls } = fakeService([{ id: 'net-a', eps: ['ep-1'] }]);
    const sync = new DockerSync(svc, undefined, silentLog, docker.socket);
    state.nets.set('net-a', []);
    await sync.sweep();
    state.nets.set('net-a', ['ep-1']);
    await sync.sweep();
    state.nets.set('net-a', []);
    await sync.sweep();
    expect(calls).toEqual(['seen net-a']);
  });
});
