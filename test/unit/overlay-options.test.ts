import { describe, expect, it } from 'vitest';
import { parseOverlayOptions } from '../../drivers/overlay/options.js';
import { gatewayMacFor } from '../../drivers/overlay/index.js';
import { overlayNetnsName } from '../../drivers/overlay/netns.js';
import { parseClusterStore } from '../../store/cluster-store.js';

describe('tsoverlay options', () => {
  it('parses the cluster name, VNI and MTU', () => {
    expect(parseOverlayOptions({ 'tsnet.cluster_network': 'blue', vni: '42', 'com.docker.network.driver.mtu': '1400' })).toEqual({ clusterNetwork: 'blue', vni: 42, mtu: 1400 });
  });

  it('takes Docker’s overlay VNI option (one VNI), and a container interface prefix', () => {
    expect(parseOverlayOptions({ 'com.docker.network.driver.overlay.vxlanid_list': '4097', 'com.docker.network.container_iface_prefix': 'ovl' })).toEqual({ vni: 4097, containerIfPrefix: 'ovl' });
    expect(parseOverlayOptions({ vni: '4097', 'com.docker.network.driver.overlay.vxlanid_list': '4097' })).toEqual({ vni: 4097 });
    expect(() => parseOverlayOptions({ vni: '4097', 'com.docker.network.driver.overlay.vxlanid_list': '4098' })).toThrow(/name different VNIs/);
    expect(() => parseOverlayOptions({ 'com.docker.network.driver.overlay.vxlanid_list': '4097,4098' })).toThrow(/must be one number/);
  });

  it('refuses unknown keys, bad names, VNIs out of range and tiny MTUs, quoting the value', () => {
    expect(() => parseOverlayOptions({ 'com.docker.network.bridge.name': 'x' })).toThrow(/tsoverlay does not know option "com.docker.network.bridge.name"/);
    expect(() => parseOverlayOptions({ 'tsnet.cluster_network': 'a b;rm -rf /' })).toThrow(/must be 1-63 characters/);
    expect(() => parseOverlayOptions({ 'tsnet.cluster_network': 'x'.repeat(64) })).toThrow(/must be 1-63 characters/);
    expect(() => parseOverlayOptions({ vni: '0' })).toThrow(/vni must be one number from 1 to 16777215/);
    expect(() => parseOverlayOptions({ vni: '16777216' })).toThrow(/vni must be/);
    expect(() => parseOverlayOptions({ vni: '1e3' })).toThrow(/vni must be/);
    expect(() => parseOverlayOptions({ 'com.docker.network.driver.mtu': '500' })).toThrow(/MTU between 1280/);
  });
});

describe('cluster naming', () => {
  it('the gateway MAC is the same for a name on every host, locally administered and unicast', () => {
    const mac = gatewayMacFor('blue');
    expect(mac).toBe(gatewayMacFor('blue'));
    expect(mac).not.toBe(gatewayMacFor('red'));
    const first = parseInt(mac.slice(0, 2), 16);
    expect(first & 0x02).toBe(0x02);
    expect(first & 0x01).toBe(0);
  });

  it('overlay namespaces are named after the VTEP and the VNI', () => {
    expect(overlayNetnsName('10.213.0.11', 4096)).toBe('tsovl-0ad5000b-4096');
    expect(overlayNetnsName('fd00::1', 7)).toMatch(/^tsovl-[0-9a-f]{8}-7$/);
  });

  it('--cluster-store takes etcd://host:port lists and nothing else', () => {
    expect(parseClusterStore('etcd://10.0.0.5:2379')).toEqual(['10.0.0.5:2379']);
    expect(parseClusterStore('etcd://a:1,b:2')).toEqual(['a:1', 'b:2']);
    expect(() => parseClusterStore('consul://x:1')).toThrow(/etcd:\/\/HOST:PORT/);
    expect(() => parseClusterStore('etcd://nohost')).toThrow(/etcd:\/\/HOST:PORT/);
    expect(() => parseClusterStore('etcd://')).toThrow(/etcd:\/\/HOST:PORT/);
  });
});
