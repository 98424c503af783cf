// The daemon's side of the CNI fast path: the installed plugin executables hand each call to the
// running daemon over a root-only unix socket (no Node start-up per call), and the daemon runs the
// very same dispatcher on its own runtime, so results are identical and names reach the resolver.

import Fastify, { type FastifyInstance } from 'fastify';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { runCni, type PluginType } from './dispatch.js';
import type { CniRuntime } from './commands.js';

export const DEFAULT_CNI_SOCKET = '/run/tsnet/cni.sock';

const HEADERS = ['command', 'containerid', 'netns', 'ifname', 'args', 'path'] as const;

export async function startCniServer(socketPath: string, runtime: CniRuntime, logLevel: string): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: logLevel, base: { server: 'cni' } }, bodyLimit: 4 * 1024 * 1024 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.post<{ Params: { type: string } }>('/cni/:type', async (req, reply) => {
    const type = req.params.type as PluginType;
    if (type !== 'tsbridge' && type !== 'tsipam') return reply.code(404).send('unknown plugin type');
    // A caller configured for another state directory must not be served from ours.
    const wantState = req.headers['tsnet-state-dir'];
    if (typeof wantState === 'string' && wantState && resolve(wantState) !== resolve(runtime.stateDir)) {
      return reply.code(421).send('state directory differs; run standalone');
    }
    const env: NodeJS.ProcessEnv = {};
    for (const h of HEADERS) {
      const v = req.headers[`cni-${h}`];
      if (typeof v === 'string' && v !== '') env[`CNI_${h.toUpperCase()}`] = v;
    }
    let out = '';
    const code = await runCni(type, { env, stdin: typeof req.body === 'string' ? req.body : '', out: (t) => (out += t) }, async () => runtime);
    return reply.code(code === 0 ? 200 : 400).header('content-type', 'application/json').send(out);
  });
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o700 });
  await rm(socketPath, { force: true });
  await app.listen({ path: socketPath });
  await chmod(socketPath, 0o600);
  return app;
}
