// A real Docker Engine and a real tsnet daemon for e2e tests (the lab is shared with bench/).

import { IMAGE } from '../../bench/lab.js';
import { run, uniqueName } from './sys.js';

export { IMAGE, ensureDocker, makeOutsideHost, startTsnet, type TsnetDaemon } from '../../bench/lab.js';

export const docker = (...args: string[]): string => run('docker', args).trim();
export const dockerFail = (...args: string[]): string => run('docker', args, { allowFail: true });

/** Networks and containers a test file creates through Docker, removed together afterwards. */
export class DockerScene {
  readonly nets: string[] = [];
  readonly ctrs: string[] = [];

  /** `docker network create -d tsbridge ARGS <unique name>` */
  net(args: string[]): string {
    const name = uniqueName('net');
    docker('network', 'create', '-d', 'tsbridge', ...args, name);
    this.nets.push(name);
    return name;
  }

  /** A busybox container sleeping on `netName` (plus any extra `docker run` arguments). */
  ctr(netName: string, ...extra: string[]): string {
    const name = uniqueName('c');
    docker('run', '-d', '--name', name, '--network', netName, ...extra, IMAGE, 'sleep', '600');
    this.ctrs.push(name);
    return name;
  }

  /** Registers a container created some other way, for cleanup. */
  track(name: string): string {
    this.ctrs.push(name);
    return name;
  }

  /** Forgets a network the test removed itself. */
  forgetNet(name: string): void {
    this.nets.splice(this.nets.indexOf(name), 1);
  }

  cleanup(): void {
    for (const c of this.ctrs) dockerFail('rm', '-f', c);
    for (const n of this.nets) dockerFail('network', 'rm', n);
  }
}
