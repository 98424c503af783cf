// A real Docker Engine and a real tsnet daemon for e2e tests. dockerd is started if none answers;
// the image is imported from busybox-static (nothing can be pulled).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, symlinkSync, copyFileSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ok, run } from './sys.js';

// Bump the tag when the image's content changes, so a machine that has the old one re-imports.
export const IMAGE = 'tsnet-busybox:3';
const ROOT = new URL('../../', import.meta.url).pathname;

export const docker = (...args: string[]): string => run('docker', args).trim();
export const dockerOk = (...args: string[]): boolean => ok('docker', args);
export function dockerFail(...args: string[]): string {
  const out = run('docker', args, { allowFail: true });
  return out;
}

async function waitFor(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function ensureDocker(): Promise<void> {
  if (!ok('docker', ['info'])) {
    const log = openSync('/tmp/tsnet-test-dockerd.log', 'a');
    spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] }).unref();
    await waitFor(() => ok('docker', ['info']), 'dockerd', 60_000);
  }
  if (!ok('docker', ['image', 'inspect', IMAGE])) {
    const dir = mkdtempSync(join(tmpdir(), 'tsnt-img-'));
    mkdirSync(join(dir, 'bin'));
    copyFileSync('/bin/busybox', join(dir, 'bin/busybox'));
    // Every applet busybox has (sh, httpd, nc, wget, ping, ip, mkdir, …) as a link in /bin.
    for (const c of run('/bin/busybox', ['--list']).split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox')) {
      symlinkSync('busybox', join(dir, 'bin', c));
    }
    mkdirSync(join(dir, 'tmp'), { mode: 0o1777 });
    // busybox has no UDP server; a tiny static one stands in (test/fixtures/udp-recorder.c).
    run('cc', ['-static', '-O2', '-o', join(dir, 'bin/udp-recorder'), new URL('../fixtures/udp-recorder.c', import.meta.url).pathname]);
    run('sh', ['-c', `tar -C ${dir} -c . | docker import - ${IMAGE}`]);
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
  await waitFor(() => existsSync('/run/docker/plugins/tsbridge.sock') && ok('curl', ['-s', '--unix-socket', '/run/docker/plugins/tsbridge.sock', '-X', 'POST', 'http://x/Plugin.Activate']) , 'tsnet sockets');
  // A daemon must never outlive its test run (it would keep answering on the plugin sockets).
  const killOnExit = (): void => {
    proc.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  return {
    stateDir,
    proc,
    extraArgs,
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
