// Networks with a gateway on the host route their containers' traffic through it: the host must
// forward (IPv4 always, IPv6 when the network has it). Set at network creation; the reconciler
// puts it back if someone turns it off.

import { sysctlSet } from '../../kernel/sysctl.js';
import type { DriverContext } from '../driver.js';

export async function enableForwarding(ctx: DriverContext, ipv6: boolean): Promise<void> {
  await sysctlSet(ctx.host.netns, 'net.ipv4.ip_forward', '1');
  if (ipv6) await sysctlSet(ctx.host.netns, 'net.ipv6.conf.all.forwarding', '1');
}
