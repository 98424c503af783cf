// tsbridge's -o options: Docker's bridge driver's names and what each accepts.

import { describe, expect, it } from 'vitest';
import { parseBridgeOptions } from '../../drivers/bridge/options.js';
import { NetError } from '../../kernel/errors.js';

const refused = (raw: Record<string, string>, msg: RegExp): void => {
  let err: unknown;
  try {
    parseBridgeOptions(raw);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(NetError);
  expect((err as Error).message).toMatch(msg);
};

describe('tsbridge options', () => {
  it('take what Docker’s bridge takes', () => {
    expect(parseBridgeOptions({
      'com.docker.network.container_iface_prefix': 'tsx',
      'com.docker.network.host_ipv4': '192.0.2.9',
      'com.docker.network.enable_ipv6': 'true',
      'com.docker.network.bridge.host_binding_ipv4': '127.0.0.1',
    })).toEqual({ icc: true, masquerade: true, containerIfPrefix: 'tsx', hostIpv4: '192.0.2.9', hostBindingIpv4: '127.0.0.1' });
  });

  it('refuse values that could not name an interface or go into a rule, each clearly', () => {
    refused({ 'com.docker.network.container_iface_prefix': 'a/b' }, /cannot start an interface name/);
    refused({ 'com.docker.network.container_iface_prefix': 'x'.repeat(13) }, /1 to 12 characters/);
    refused({ 'com.docker.network.container_iface_prefix': '' }, /1 to 12 characters/);
    refused({ 'com.docker.network.host_ipv4': '10.0.0.1/8' }, /must be an IPv4 address/);
    refused({ 'com.docker.network.host_ipv4': 'fd00::1' }, /must be an IPv4 address/);
    // Docker's net.ParseIP refuses these as well.
    refused({ 'com.docker.network.bridge.host_binding_ipv4': '999.1.1.1' }, /must be an IPv4 address, not "999.1.1.1"/);
    refused({ 'com.docker.network.bridge.host_binding_ipv4': '127.0.0.1/8' }, /must be an IPv4 address/);
    refused({ 'com.docker.network.enable_ipv6': 'maybe' }, /must be true or false/);
    refused({ 'com.docker.network.bridge.nmae': 'x' }, /does not know option/);
  });
});
