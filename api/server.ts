// tsnet's own control API, for the CLI: a root-only unix socket (0600) served by fastify. Reads
// come from the daemon's store through the same inventory code the CLI uses when the daemon is
// down; what only the live daemon knows (names learnt from Docker and from other overlay hosts,
// metrics) is served from memory. Metrics can also be served on a loopback TCP address, never on
// another one.

import Fastify, { type FastifyInstance } from 'fastify';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { endpointRows, findNetwork, networkDetail, networkRows, noSuchNetwork, poolRows, portRows, readInventory } from '../core/inventory.js';
import type { Metrics } from '../core/metrics.js';
import type { NetworkService } from '../core/network-service.js';
import type { Reconciler } from '../core/reconciler.js';
import type { RecordBook } from '../dns/records.js';
import type { Store } from '../store/store.js';
import type { Ipam } from '../ipam/ipam.js';
import { removeNetworkByRef } from '../core/network-removal.js';
import { parseMetricsAddr } from './addresses.js';

export interface ApiDeps {
  store: Store;
  networks: NetworkService;
  ipam?: Ipam;
  reconciler: Reconciler;
  records: RecordBook;
  metrics: Metrics;
  version: string;
  startedAt: number;
}

const LOOKUP_TYPES = new Set(['A', 'AAAA', 'PTR', 'ANY']);

export function buildApiApp(d: ApiDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => reply.code(err.statusCode && err.statusCode >= 400 ? err.statusCode : 500).send({ error: err.message }));
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no such API: ${req.method} ${req.url}` }));

  app.get('/v1/health', async () => ({ ok: true, pid: process.pid, version: d.version, uptimeSeconds: Math.round((Date.now() - d.startedAt) / 1000) }));
  app.get('/v1/networks', async () => networkRows(await readInventory(d.store)));
  app.get<{ Params: { ref: string } }>('/v1/networks/:ref', async (req, reply) => {
    const inv = await readInventory(d.store);
    const n = findNetwork(inv, req.params.ref);
    if (!n) return reply.code(404).send({ error: noSuchNetwork(req.params.ref) });
    return networkDetail(inv, n);
  });
  app.get<{ Querystring: { network?: string } }>('/v1/endpoints', async (req, reply) => {
    const inv = await readInventory(d.store);
    if (!req.query.network) return endpointRows(inv);
    const n = findNetwork(inv, req.query.network);
    if (!n) return reply.code(404).send({ error: noSuchNetwork(req.query.network) });
    return endpointRows(inv, n);
  });
  app.get('/v1/ipam/pools', async () => poolRows(await readInventory(d.store)));
  app.get('/v1/ports', async () => portRows(await readInventory(d.store)));
  app.get<{ Querystring: { name?: string; network?: string; type?: string } }>('/v1/dns/lookup', async (req, reply) => {
    const { name, network } = req.query;
    const type = (req.query.type ?? 'A').toUpperCase();
    if (!name || !network) return reply.code(400).send({ error: 'name and network are required' });
    if (!LOOKUP_TYPES.has(type)) return reply.code(400).send({ error: `type must be one of ${[...LOOKUP_TYPES].join(', ')}` });
    const n = findNetwork(await readInventory(d.store), network);
    if (!n) return reply.code(404).send({ error: noSuchNetwork(network) });
    // The live records: Docker names and other overlay hosts' endpoints are only known here.
    return { network: n.id, name, type, result: d.records.lookup(n.id, name, type) };
  });
  app.post<{ Params: { ref: string }; Querystring: { force?: string } }>('/v1/networks/:ref/remove', async (req, reply) => {
    const r = await removeNetworkByRef(d.store, d.networks, d.ipam, req.params.ref, req.query.force === '1');
    if (r.outcome !== 'removed') return reply.code(r.outcome === 'not-found' ? 404 : 409).send({ error: r.message });
    const { outcome: _, ...removed } = r;
    return removed;
  });
  app.post('/v1/gc', async () => {
    const endpoints = await d.networks.gcEndpoints();
    const repairs = await d.reconciler.pass();
    return { endpoints, repairs };
  });
  serveMetrics(app, d.metrics);
  return app;
}

function serveMetrics(app: FastifyInstance, metrics: Metrics): void {
  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.text()));
}

export async function startApiSocket(path: string, deps: ApiDeps): Promise<FastifyInstance> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await rm(path, { force: true });
  const app = buildApiApp(deps);
  await app.listen({ path });
  await chmod(path, 0o600);
  return app;
}

export async function startMetricsListener(addr: string, metrics: Metrics): Promise<FastifyInstance> {
  const { host, port } = parseMetricsAddr(addr);
  const app = Fastify({ logger: false });
  serveMetrics(app, metrics);
  await app.listen({ host, port });
  return app;
}
