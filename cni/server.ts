// The daemon's side of the CNI fast path. The installed plugin executable (native/src/cni_shim.c)
// sends each call here over a root-only unix socket, so no Node starts per call; the daemon runs
// the very same dispatcher on its own runtime, so results are identical and names registered
// through CNI reach its resolver at once.
//
// Framing: nine fields (type, CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS,
// CNI_PATH, TSNET_STATE_DIR, stdin), each a 4-byte big-endian length and the bytes. Reply: a status
// byte ('0' ok, '1' CNI error, 'F' run standalone) and the stdout text.

import { createServer, type Server } from 'node:net';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { runCni, type PluginType } from './dispatch.js';
import type { CniRuntime } from './commands.js';
import type { CallObserver } from '../core/metrics.js';

export const DEFAULT_CNI_SOCKET = '/run/tsnet/cni.sock';

const FIELDS = ['type', 'CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH', 'TSNET_STATE_DIR', 'stdin'] as const;
const MAX_REQUEST = 17 * 1024 * 1024;

export function decodeRequest(buf: Buffer): Record<(typeof FIELDS)[number], string> | undefined {
  const out: Partial<Record<(typeof FIELDS)[number], string>> = {};
  let o = 0;
  for (const f of FIELDS) {
    if (o + 4 > buf.length) return undefined;
    const len = buf.readUInt32BE(o);
    if (o + 4 + len > buf.length) return undefined;
    out[f] = buf.toString('utf8', o + 4, o + 4 + len);
    o += 4 + len;
  }
  return out as Record<(typeof FIELDS)[number], string>;
}

export async function startCniServer(socketPath: string, runtime: CniRuntime, observer?: CallObserver): Promise<Server> {
  // allowHalfOpen: the shim shuts its side down after sending; the reply still has to go back.
  const server = createServer({ allowHalfOpen: true }, (conn) => {
    const chunks: Buffer[] = [];
    let size = 0;
    conn.on('error', () => undefined);
    conn.on('data', (d) => {
      size += d.length;
      if (size > MAX_REQUEST) return conn.destroy();
      chunks.push(d);
    });
    conn.on('end', () => {
      void (async () => {
        const req = decodeRequest(Buffer.concat(chunks));
        // A malformed request, an unknown type or another state directory: let the caller run standalone.
        if (!req || !['tsbridge', 'tsipam', 'tsmacvlan', 'tsoverlay'].includes(req.type) || resolve(req.TSNET_STATE_DIR || '/var/lib/tsnet') !== resolve(runtime.stateDir)) {
          conn.end('F');
          return;
        }
        const env: NodeJS.ProcessEnv = {};
        for (const k of ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH'] as const) if (req[k]) env[k] = req[k];
        runtime.log.info({ cni: req.CNI_COMMAND, type: req.type, container: req.CNI_CONTAINERID, ifname: req.CNI_IFNAME }, 'cni call');
        let out = '';
        const t0 = performance.now();
        const code = await runCni(req.type as PluginType, { env, stdin: req.stdin, out: (t) => (out += t) }, async () => runtime);
        conn.end(`${code === 0 ? '0' : '1'}${out}`);
        if (observer) {
          // The CNI error code (a number in the error JSON) labels failures.
          const errorCode = code === 0 ? undefined : String((/"code":\s*(\d+)/.exec(out) ?? [])[1] ?? 'unknown');
          observer.call('cni', `${req.type} ${['ADD', 'DEL', 'CHECK', 'STATUS', 'VERSION', 'GC'].includes(req.CNI_COMMAND) ? req.CNI_COMMAND : 'other'}`, (performance.now() - t0) / 1000, errorCode);
        }
      })();
    });
  });
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o700 });
  await rm(socketPath, { force: true });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(socketPath, () => res());
  });
  await chmod(socketPath, 0o600);
  return server;
}
