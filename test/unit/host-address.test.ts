// Host addresses of published ports are compared as strings everywhere after parsing (the
// wildcard test, port holds, firewall rules, the relay), so both front-ends store one spelling.

import { describe, expect, it } from 'vitest';
import { parseConf } from '../../cni/conf.js';
import { CniError } from '../../cni/types.js';
import { canonicalIp, isAnyAddress, parseDockerPortmap } from '../../drivers/shared/ports.js';

const dockerHostIp = (HostIP: string): string | undefined => parseDockerPortmap([{ Proto: 6, Port: 80, HostPort: 8080, HostIP }])[0]!.hostIp;

const cniHostIp = (hostIP: string): string | undefined =>
  parseConf({
    cniVersion: '1.1.0', name: 'ha', type: 'tsbridge', bridge: 'tsb-ha', ipam: { type: 'tsipam', subnet: '10.9.0.0/24' },
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP }] },
  }).portMappings[0]!.hostIp;

describe('host addresses of published ports', () => {
  it('have one spelling', () => {
    expect(canonicalIp('0:0::0')).toBe('::');
    expect(canonicalIp('0::1')).toBe('::1');
    expect(canonicalIp('2001:DB8:0:0::1')).toBe('2001:db8::1');
    expect(canonicalIp('127.0.0.1')).toBe('127.0.0.1');
    for (const bad of ['', 'x', '1.2.3', '::g', '10.0.0.1/24']) expect(canonicalIp(bad)).toBeUndefined();
  });

  it('Docker: stored canonical, so any spelling of :: is the IPv6 wildcard', () => {
    expect(dockerHostIp('0:0:0:0:0:0:0:0')).toBe('::');
    expect(isAnyAddress(dockerHostIp('0:0::0')!)).toBe(true);
    expect(dockerHostIp('2001:DB8::1')).toBe('2001:db8::1');
    expect(() => dockerHostIp('localhost')).toThrow(/not an IP address/);
  });

  it('CNI: any spelling of a wildcard means every address; others are stored canonical; garbage is a config error', () => {
    expect(cniHostIp('0:0::0')).toBeUndefined();
    expect(cniHostIp('0.0.0.0')).toBeUndefined();
    expect(cniHostIp('0::1')).toBe('::1');
    expect(cniHostIp('2001:DB8::1')).toBe('2001:db8::1');
    let err: unknown;
    try {
      cniHostIp('not-an-ip');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(7);
  });
});
