// Docker's plugin protocol at the HTTP layer: every request Docker 20.10 really sent (the probe
// transcript in test/fixtures, captured from Debian's docker.io) parses and reaches the right
// service call with the right typed arguments; the wire rules hold for bad input.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildPluginApp } from '../../cnm/server.js';
import { NetError } from '../../kernel/errors.js';
import { KeyedMutex } from '../../core/tx.js';

type Call = [string, ...unknown[]];

function stubs() {
  const calls: Call[] = [];
  const rec = (name: string, ret: unknown = undefined) => async (...args: unknown[]) => {
    calls.push([name, ...args]);
    return ret;
  };
  const networks = {
    createNetwork: rec('createNetwork'),
    deleteNetwork: rec('deleteNetwork'),
    createEndpoint: async (spec: unknown) => {
      calls.push(['createEndpoint', spec]);
      return { state: { mac: '02:42:0a:00:00:02' } };
    },
    join: rec('join', { ifName: 'tscabc', gateway4: '10.213.0.1', staticRoutes: [] }),
    leave: rec('leave'),
    deleteEndpoint: rec('deleteEndpoint'),
    programExternal: rec('programExternal', []),
    revokeExternal: rec('revokeExternal'),
  };
  const ipam = {
    requestPool: async (r: unknown) => {
      calls.push(['requestPool', r]);
      return { id: 'sp/10.213.0.0/24', subnet: '10.213.0.0/24' };
    },
    releasePool: rec('releasePool'),
    requestAddress: async (id: string, r: unknown) => {
      calls.push(['requestAddress', id, r]);
      return '10.213.0.2/24';
    },
    releaseAddress: rec('releaseAddress'),
  };
  const app = buildPluginApp(
    { name: 'tsbridge', implements: ['NetworkDriver', 'IpamDriver'] },
    { pluginDir: '/nonexistent', logLevel: 'silent', networks: networks as never, ipam: ipam as never },
  );
  return { app, calls };
}

const transcript = readFileSync(new URL('../fixtures/cnm-probe-transcript.jsonl', import.meta.url), 'utf8')
  .trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.url && 'request' in r); // some lines are notes

// Docker sends an empty body (not "{}") for calls without arguments.
const body = (r: { url: string; request: object }): string =>
  ['/Plugin.Activate', '/NetworkDriver.GetCapabilities', '/IpamDriver.GetCapabilities', '/IpamDriver.GetDefaultAddressSpaces'].includes(r.url)
    ? '' : `${JSON.stringify(r.request)}\n`;

describe('Docker 20.10 transcript replay', () => {
  it(`all ${transcript.length} recorded requests get a 200 JSON answer`, async () => {
    const { app, calls } = stubs();
    for (const r of transcript) {
      // No Content-Type, as Docker sends them.
      const res = await app.inject({ method: 'POST', url: r.url, payload: body(r), headers: { accept: 'application/vnd.docker.plugins.v1.2+json' } });
      expect(res.statusCode, `${r.run}#${r.seq} ${r.url}: ${res.body}`).toBe(200);
      expect(() => JSON.parse(res.body)).not.toThrow();
    }
    expect(calls.filter((c) => c[0] === 'createNetwork')).toHaveLength(transcript.filter((r) => r.url === '/NetworkDriver.CreateNetwork').length);
  });

  it('translates the fields the drivers use', async () => {
    const { app, calls } = stubs();
    const find = (url: string, pred: (r: any) => boolean = () => true) => transcript.find((r) => r.url === url && pred(r))!;
    const send = (r: any) => app.inject({ method: 'POST', url: r.url, payload: body(r) });

    await send(find('/NetworkDriver.CreateNetwork', (r) => r.request.Options['com.docker.network.generic']['com.docker.network.driver.mtu']));
    const [, spec] = calls.at(-1) as [string, any];
    expect(spec.ipv4[0]).toEqual({ subnet: '10.213.0.0/24', gateway: '10.213.0.1/24' });
    expect(spec.rawOptions['com.docker.network.driver.mtu']).toBe('1400');
    expect(spec.enableIPv6).toBe(false);

    const ce = find('/NetworkDriver.CreateEndpoint', (r) => r.request.Interface.MacAddress);
    const res = await send(ce);
    expect(JSON.parse(res.body)).toEqual({}); // Docker set the MAC: we must not answer one
    expect((calls.at(-1) as [string, any])[1]).toMatchObject({ address4: ce.request.Interface.Address, mac: ce.request.Interface.MacAddress });

    const join = await send(find('/NetworkDriver.Join'));
    expect(JSON.parse(join.body)).toMatchObject({ InterfaceName: { SrcName: 'tscabc', DstPrefix: 'eth' }, Gateway: '10.213.0.1' });

    const prog = find('/NetworkDriver.ProgramExternalConnectivity', (r) => (r.request.Options?.['com.docker.network.portmap'] ?? []).length > 3);
    await send(prog);
    const bindings = (calls.at(-1) as [string, string, string, any[]])[3];
    expect(bindings).toEqual(expect.arrayContaining([
      { proto: 'tcp', containerPort: 80, hostPort: 18080, hostPortEnd: 18080 },
      { proto: 'udp', containerPort: 81, hostPort: 18081, hostPortEnd: 18081, hostIp: '127.0.0.1' },
      { proto: 'tcp', containerPort: 95, hostPort: 0, hostPortEnd: 0 },
    ]));

    await send(find('/IpamDriver.RequestAddress', (r) => r.request.Options?.RequestAddressType));
    expect((calls.at(-1) as [string, string, any])[2]).toMatchObject({ kind: 'gateway' });
  });
});

describe('wire rules', () => {
  it('errors are 4xx/5xx with {"Err"}; unknown calls 404; bad JSON and missing bodies 400', async () => {
    const { app } = stubs();
    const post = (url: string, payload: string) => app.inject({ method: 'POST', url, payload });
    const notJson = await post('/NetworkDriver.CreateNetwork', '{nope');
    expect(notJson.statusCode).toBe(400);
    expect(JSON.parse(notJson.body).Err).toMatch(/not JSON/);
    expect((await post('/NetworkDriver.CreateNetwork', '')).statusCode).toBe(400);
    expect((await post('/NetworkDriver.CreateNetwork', '[]')).statusCode).toBe(400);
    expect((await post('/NetworkDriver.CreateNetwork', '{"NetworkID":"../../etc"}')).statusCode).toBe(400);
    const unknown = await post('/NetworkDriver.Bogus', '{}');
    expect(unknown.statusCode).toBe(404);
    expect(JSON.parse(unknown.body).Err).toMatch(/does not implement/);
    expect((await post('/Plugin.Activate', '')).json()).toEqual({ Implements: ['NetworkDriver', 'IpamDriver'] });
    expect((await post('/NetworkDriver.EndpointOperInfo', '{"NetworkID":"a","EndpointID":"b"}')).json()).toEqual({ Value: {} });
  });

  it('service errors map to statuses Docker reports, and IPAM errors are never a 200', async () => {
    const { app } = stubs();
    const failing = buildPluginApp(
      { name: 'tsipam', implements: ['IpamDriver'] },
      {
        pluginDir: '/x', logLevel: 'silent', networks: {} as never,
        ipam: { requestPool: async () => { throw new NetError('POOL_OVERLAP', 'subnet 10.0.0.0/24 overlaps 10.0.0.0/16, which is in use'); } } as never,
      },
    );
    const res = await failing.inject({ method: 'POST', url: '/IpamDriver.RequestPool', payload: '{"Pool":"10.0.0.0/24","V6":false}' });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toEqual({ Err: 'subnet 10.0.0.0/24 overlaps 10.0.0.0/16, which is in use' });
    await app.close();
  });
});

describe('per-network serialisation', () => {
  it('serialises calls for one key and runs different keys concurrently', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const step = (k: string, ms: number) => m.run(k, async () => {
      log.push(`${k}+`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`${k}-`);
    });
    await Promise.all([step('a', 30), step('a', 1), step('b', 5)]);
    // a's second call starts only after the first ended; b runs inside a's first call.
    expect(log.indexOf('a-')).toBeLessThan(log.lastIndexOf('a+'));
    expect(log.indexOf('b+')).toBeLessThan(log.indexOf('a-'));
  });

  it('a failing call does not block the next one on the same key', async () => {
    const m = new KeyedMutex();
    await expect(m.run('k', async () => { throw new Error('x'); })).rejects.toThrow('x');
    expect(await m.run('k', async () => 5)).toBe(5);
  });
});
