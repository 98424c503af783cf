// A small lab shared by the e2e tests and the benchmarks: a running dockerd (started if none
// answers), the imported busybox image, a tsnet daemon on the plugin sockets, and "outside" test
// hosts as namespaces routed via the host.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Bump the tag when the image's content changes, so a machine that has the old one re-imports.
export const IMAGE = 'tsnet-busybox:3';

function packageRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'binding.gyp'))) dir = join(dir, '..');
  return dir;
}
export const ROOT = packageRoot();

export function sh(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: 120_000, maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Whether a command is on PATH (benchmarks whose tools are missing print a row saying so). */
export const hasCommand = (name: string): boolean => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { stdio: 'ignore' }).status === 0;

export const succeeds = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore', timeout: 120_000 }).status === 0;

export async function waitFor(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function ensureDocker(): Promise<void> {
  if (!succeeds('docker', ['info'])) {
    const log = openSync('/tmp/tsnet-test-dockerd.log', 'a');
    spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] }).unref();
    await waitFor(() => succeeds('docker', ['info']), 'dockerd', 60_000);
  }
  if (!succeeds('docker', ['image', 'inspect', IMAGE])) {
    const dir = mkdtempSync(join(tmpdir(), 'tsnt-img-'));
    mkdirSync(join(dir, 'bin'));
    copyFileSync('/bin/busybox', join(dir, 'bin/busybox'));
    // Every applet busybox has (sh, httpd, nc, ping, ip, nslookup, …) as a link in /bin.
    for (const c of sh('/bin/busybox', ['--list']).split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox')) {
      symlinkSync('busybox', join(dir, 'bin', c));
    }
    mkdirSync(join(dir, 'tmp'), { mode: 0o1777 });
    // busybox has no UDP server; a tiny static one stands in (test/fixtures/udp-recorder.c).
    sh('cc', ['-static', '-O2', '-o', join(dir, 'bin/udp-recorder'), join(ROOT, 'test/fixtures/udp-recorder.c')]);
    sh('sh', ['-c', `tar -C ${dir} -c . | docker import - ${IMAGE}`]);
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface TsnetDaemon {
  stateDir: string;
  extraArgs: string[];
  proc: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startTsnet(stateDir = mkdtempSync(join(tmpdir(), 'tsnt-state-')), extraArgs: string[] = []): Promise<TsnetDaemon> {
  const log = openSync(join(stateDir, 'daemon.log'), 'a');
  const proc = spawn(process.execPath, [join(ROOT, 'dist/bin/tsnet.js'), 'serve', '--state-dir', stateDir, '--log-level', 'info', ...extraArgs], {
    stdio: ['ignore', log, log],
  });
  // The sockets must be this daemon's: another one already serving them (left running by hand)
  // would answer the same, while this one exits at its one-per-namespace claim. ss names the
  // process listening.
  const sock = '/run/docker/plugins/tsbridge.sock';
  const exited = (): boolean => proc.exitCode !== null || proc.signalCode !== null;
  const ours = (): boolean => spawnSync('ss', ['-xlpn', 'src', sock], { encoding: 'utf8' }).stdout.includes(`pid=${proc.pid},`);
  await waitFor(
    () => exited() || (existsSync(sock) && ours() && succeeds('curl', ['-s', '--unix-socket', sock, '-X', 'POST', 'http://x/Plugin.Activate'])),
    'tsnet sockets',
  );
  if (exited()) throw new Error(`tsnet serve exited (${proc.exitCode ?? proc.signalCode}): ${readFileSync(join(stateDir, 'daemon.log'), 'utf8').slice(-600)}`);
  // A daemon must never outlive its run (it would keep answering on the plugin sockets).
  const killOnExit = (): void => {
    proc.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  return {
    stateDir,
    extraArgs,
    proc,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        process.off('exit', killOnExit);
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        const force = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        proc.once('exit', () => {
          clearTimeout(force);
          resolve();
        });
        proc.kill(signal);
      }),
  };
}

/**
 * A namespace "outside" host at `remote`, linked to the host (which gets `local`) by a veth pair.
 * With `v6`, both ends also get an IPv6 /64. With `defaultRoute`, the outside host routes
 * everything via the host but knows no route to container subnets, so replies only work
 * through NAT.
 */
export function makeOutsideHost(
  name: string, local: string, remote: string, prefix = 30,
  opts: { v6?: { local: string; remote: string }; defaultRoute?: boolean } = {},
): { remove(): void } {
  sh('ip', ['netns', 'add', name]);
  sh('ip', ['link', 'add', `${name}h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
  sh('ip', ['addr', 'add', `${local}/${prefix}`, 'dev', `${name}h`]);
  if (opts.v6) sh('ip', ['-6', 'addr', 'add', `${opts.v6.local}/64`, 'dev', `${name}h`, 'nodad']);
  sh('ip', ['link', 'set', `${name}h`, 'up']);
  sh('ip', ['-n', name, 'addr', 'add', `${remote}/${prefix}`, 'dev', 'eth0']);
  if (opts.v6) sh('ip', ['-n', name, '-6', 'addr', 'add', `${opts.v6.remote}/64`, 'dev', 'eth0', 'nodad']);
  sh('ip', ['-n', name, 'link', 'set', 'eth0', 'up']);
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  if (opts.defaultRoute) {
    sh('ip', ['-n', name, 'route', 'add', 'default', 'via', local]);
    if (opts.v6) sh('ip', ['-n', name, '-6', 'route', 'add', 'default', 'via', opts.v6.local]);
  }
  return {
    remove() {
      sh('ip', ['link', 'del', `${name}h`], { allowFail: true });
      sh('ip', ['netns', 'del', name], { allowFail: true });
    },
  };
}
