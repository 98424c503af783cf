// Docker's remote plugin protocol (NetworkDriver and IpamDriver) on unix sockets, one per driver
// name, served by fastify. Docker sends POSTs without Content-Type and with empty bodies for calls
// without arguments; success is 200 with a JSON object, failure a 4xx/5xx with {"Err": "..."}
// (a 200 carrying an error is taken as success on Docker's IPAM side).

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { netCodeOf, type ErrorCode } from '../kernel/errors.js';
import type { NetworkService } from '../core/network-service.js';
import type { Ipam } from '../ipam/ipam.js';
import type { CallObserver } from '../core/metrics.js';
import { networkRoutes } from './network-routes.js';
import type { DriverName } from '../drivers/driver.js';
import { ipamRoutes } from './ipam-routes.js';

const STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400, UNSUPPORTED_OPTION: 400, NOT_FOUND: 400, ALREADY_EXISTS: 409, POOL_OVERLAP: 409,
  POOL_EXHAUSTED: 409, ADDRESS_IN_USE: 409, ADDRESS_OUT_OF_RANGE: 400, PORT_IN_USE: 409, TRY_AGAIN: 503, UNAVAILABLE: 503,
  KERNEL: 500, INTERNAL: 500,
};

export type Handler = (body: Record<string, any>) => Promise<object>;

export interface PluginSocket {
  /** Socket file name without .sock; also the driver unless `driver` says otherwise. */
  name: string;
  /** The network driver behind this socket (a managed plugin's one socket serves tsbridge). */
  driver?: DriverName;
  implements: Array<'NetworkDriver' | 'IpamDriver'>;
}

export interface CnmServerOptions {
  pluginDir: string;
  logLevel: string;
  networks: NetworkService;
  ipam: Ipam;
  /** Told about every call that reached a handler (metrics). */
  observer?: CallObserver;
}

/** Methods Docker calls with an empty body. */
const NO_ARGS = new Set(['/Plugin.Activate', '/NetworkDriver.GetCapabilities', '/IpamDriver.GetCapabilities', '/IpamDriver.GetDefaultAddressSpaces']);

export function buildPluginApp(sock: PluginSocket, opts: CnmServerOptions): FastifyInstance {
  const app = Fastify({
    logger: { level: opts.logLevel, base: { plugin: sock.name } },
    // Go's client keeps connections open forever and retries nothing; never close an idle one.
    keepAliveTimeout: 0,
    // While stopping, answer what still arrives on open connections rather than 503: Docker does
    // not retry a 503 (the user's command fails), but it does retry a closed connection.
    return503OnClosing: false,
    bodyLimit: 1024 * 1024,
  });
  // Accept any (or no) Content-Type and parse the body ourselves.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  const routes = new Map<string, Handler>();
  routes.set('/Plugin.Activate', async () => ({ Implements: sock.implements }));
  if (sock.implements.includes('NetworkDriver')) for (const [p, h] of networkRoutes(opts.networks, sock.driver ?? (sock.name as DriverName), app.log)) routes.set(p, h);
  if (sock.implements.includes('IpamDriver')) for (const [p, h] of ipamRoutes(opts.ipam)) routes.set(p, h);

  const fail = (reply: FastifyReply, status: number, msg: string) => reply.code(status).send({ Err: msg });
  // Whatever fastify itself refuses (a body over the limit, a broken request) still answers in
  // Docker's shape, so dockerd shows the reason instead of a decode error.
  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => fail(reply, err.statusCode && err.statusCode >= 400 ? err.statusCode : 500, err.message));
  app.setNotFoundHandler((req, reply) => fail(reply, 404, `${sock.name} does not implement ${req.method} ${req.url}`));

  app.post('/*', async (req: FastifyRequest, reply: FastifyReply) => {
    const handler = routes.get(req.url);
    if (!handler) return fail(reply, 404, `${sock.name} does not implement ${req.url}`);
    const text = typeof req.body === 'string' ? req.body.trim() : '';
    let body: Record<string, any> = {};
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        return fail(reply, 400, `request body is not JSON`);
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) return fail(reply, 400, 'request body must be a JSON object');
    } else if (!NO_ARGS.has(req.url)) {
      return fail(reply, 400, `${req.url} needs a request body`);
    }
    const t0 = performance.now();
    try {
      const out = await handler(body);
      const ms = performance.now() - t0;
      opts.observer?.call('cnm', req.url, ms / 1000);
      req.log.debug({ call: req.url, ms: Math.round(ms * 100) / 100 }, 'call answered');
      return out;
    } catch (e) {
      const code = netCodeOf(e);
      opts.observer?.call('cnm', req.url, (performance.now() - t0) / 1000, code);
      req.log.warn({ err: (e as Error).message, code, call: req.url }, 'call failed');
      return fail(reply, STATUS[code], (e as Error).message);
    }
  });
  return app;
}

export async function startPluginSockets(sockets: PluginSocket[], opts: CnmServerOptions): Promise<FastifyInstance[]> {
  await mkdir(opts.pluginDir, { recursive: true, mode: 0o700 });
  const apps: FastifyInstance[] = [];
  for (const s of sockets) {
    const path = join(opts.pluginDir, `${s.name}.sock`);
    await rm(path, { force: true }); // a stale socket from a killed daemon
    const app = buildPluginApp(s, opts);
    await app.listen({ path });
    await chmod(path, 0o660);
    apps.push(app);
  }
  return apps;
}
