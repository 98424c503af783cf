// The CNI execution protocol: environment and stdin in, result or error JSON out, exit code.
// Everything process-specific is passed in, so tests drive it directly (skel's dispatcher idea).

import { CNI_CODES, CniError, SUPPORTED_VERSIONS, type CniEnv } from './types.js';
import { parseConf, type BridgeConf } from './conf.js';
import { cmdAdd, cmdCheck, cmdDel, cmdGc, toCniError, type CniRuntime } from './commands.js';
import { ipamAdd, ipamDel } from './ipam-plugin.js';
import { macvlanAdd, macvlanCheck, macvlanDel } from './macvlan.js';
import { overlayAdd, overlayCheck, overlayDel, overlayGc } from './overlay.js';
import { shapeResult } from './version.js';
import { validateIfName } from '../kernel/names.js';

export interface CniIo {
  env: NodeJS.ProcessEnv;
  stdin: string;
  out: (text: string) => void;
}

export type PluginType = 'tsbridge' | 'tsipam' | 'tsmacvlan' | 'tsoverlay';

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

function readEnv(e: NodeJS.ProcessEnv, command: string): CniEnv {
  const env: CniEnv = {
    command,
    containerId: e.CNI_CONTAINERID ?? '',
    netns: e.CNI_NETNS ?? '',
    ifName: e.CNI_IFNAME ?? '',
    args: e.CNI_ARGS ?? '',
    path: e.CNI_PATH ?? '',
  };
  const missing: string[] = [];
  if (['ADD', 'DEL', 'CHECK'].includes(command)) {
    if (!env.containerId) missing.push('CNI_CONTAINERID');
    if (!env.ifName) missing.push('CNI_IFNAME');
  }
  if (['ADD', 'CHECK'].includes(command) && !env.netns) missing.push('CNI_NETNS');
  if (missing.length) throw new CniError(CNI_CODES.INVALID_ENV, `missing required environment: ${missing.join(', ')}`);
  if (env.containerId && !ID_RE.test(env.containerId)) throw new CniError(CNI_CODES.INVALID_ENV, `CNI_CONTAINERID ${JSON.stringify(env.containerId)} is invalid`);
  if (env.ifName) {
    try {
      validateIfName(env.ifName);
    } catch (err) {
      throw new CniError(CNI_CODES.INVALID_ENV, `CNI_IFNAME: ${(err as Error).message}`);
    }
  }
  return env;
}

export async function runCni(type: PluginType, io: CniIo, runtime: () => Promise<CniRuntime>): Promise<number> {
  let version = '1.1.0';
  const command = io.env.CNI_COMMAND ?? '';
  try {
    if (!command) {
      process.stderr.write(`tsnet ${type} CNI plugin; supports CNI ${SUPPORTED_VERSIONS.join(', ')}\n`);
      return 0;
    }
    if (!['ADD', 'DEL', 'CHECK', 'STATUS', 'VERSION', 'GC'].includes(command)) {
      throw new CniError(CNI_CODES.INVALID_ENV, `unknown CNI_COMMAND ${JSON.stringify(command)}`);
    }
    let raw: unknown = {};
    if (io.stdin.trim()) {
      try {
        raw = JSON.parse(io.stdin);
      } catch (e) {
        throw new CniError(CNI_CODES.DECODE_FAILURE, `network configuration is not JSON: ${(e as Error).message}`);
      }
    }
    const declared = (raw as { cniVersion?: unknown }).cniVersion;
    if (typeof declared === 'string' && /^\d+\.\d+\.\d+$/.test(declared)) version = declared;
    if (command === 'VERSION') {
      io.out(JSON.stringify({ cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] }));
      return 0;
    }
    const conf: BridgeConf = parseConf(raw);
    version = conf.cniVersion;
    const env = readEnv(io.env, command);
    if (command === 'CHECK' && version.startsWith('0.3')) throw new CniError(CNI_CODES.INCOMPATIBLE_VERSION, `CHECK needs CNI 0.4.0 or later (config says ${version})`);
    let rt: CniRuntime;
    try {
      rt = await runtime();
    } catch (e) {
      if (e instanceof CniError) throw e;
      throw new CniError(command === 'STATUS' ? CNI_CODES.NOT_AVAILABLE : CNI_CODES.TRY_AGAIN, `tsnet is not available: ${(e as Error).message}`);
    }
    if (type === 'tsipam') {
      if (command === 'ADD') io.out(JSON.stringify(shapeResult(await ipamAdd(rt, env, conf), version)));
      else if (command === 'DEL') await ipamDel(rt, env);
      else if (command === 'GC') await ipamDel(rt, env, conf);
      return 0;
    }
    if (type === 'tsmacvlan') {
      if (command === 'ADD') io.out(JSON.stringify(shapeResult(await macvlanAdd(rt, env, conf), version)));
      else if (command === 'DEL') await macvlanDel(rt, env);
      else if (command === 'CHECK') await macvlanCheck(env, conf);
      else if (command === 'GC') await ipamDel(rt, env, conf);
      return 0;
    }
    if (type === 'tsoverlay') {
      if (command === 'ADD') io.out(JSON.stringify(shapeResult(await overlayAdd(rt, env, conf), version)));
      else if (command === 'DEL') await overlayDel(rt, env, conf);
      else if (command === 'CHECK') await overlayCheck(rt, env, conf);
      else if (command === 'GC') await overlayGc(rt, conf);
      return 0;
    }
    switch (command) {
      case 'ADD':
        io.out(JSON.stringify(shapeResult(await cmdAdd(rt, env, conf), version)));
        return 0;
      case 'DEL':
        await cmdDel(rt, env, conf);
        return 0;
      case 'CHECK':
        await cmdCheck(rt, env, conf);
        return 0;
      case 'GC':
        await cmdGc(rt, env, conf);
        return 0;
      case 'STATUS':
        return 0;
    }
    return 0;
  } catch (e) {
    const err = toCniError(e);
    io.out(JSON.stringify({ cniVersion: version, code: err.code, msg: err.message, ...(err.details ? { details: err.details } : {}) }));
    return 1;
  }
}
