// A real Docker Engine and a real tsnet daemon for e2e tests (the lab is shared with bench/).

import { run } from './sys.js';

export { IMAGE, ensureDocker, startTsnet, type TsnetDaemon } from '../../bench/lab.js';

export const docker = (...args: string[]): string => run('docker', args).trim();
export const dockerFail = (...args: string[]): string => run('docker', args, { allowFail: true });
