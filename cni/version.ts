// Version negotiation and result shapes per requested version.

import { CNI_CODES, CniError, SUPPORTED_VERSIONS, type CniResult } from './types.js';

export function checkVersion(v: unknown): string {
  if (typeof v !== 'string' || !/^\d+\.\d+\.\d+$/.test(v)) {
    throw new CniError(CNI_CODES.DECODE_FAILURE, `cniVersion ${JSON.stringify(v)} is not a version`);
  }
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(CNI_CODES.INCOMPATIBLE_VERSION, `incompatible CNI version ${v}`, `plugin supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return v;
}

/** The result in the shape of `version`: 0.3.x/0.4.0 carry ips[].version, 1.x does not. */
export function shapeResult(r: CniResult, version: string): CniResult {
  const legacy = version.startsWith('0.');
  return {
    ...r,
    cniVersion: version,
    ...(r.ips
      ? {
          ips: r.ips.map((ip) => {
            const { version: _v, ...rest } = ip;
            return legacy ? { ...rest, version: ip.address.includes(':') ? '6' : '4' } : rest;
          }),
        }
      : {}),
  };
}
