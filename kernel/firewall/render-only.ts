// A firewall that renders its rules and commits none: for a rehearsal of the daemon's paths in a
// namespace of its own (cni/warm-up.ts), where iptables would otherwise write to the daemon's own
// namespace, the real host's.

import { IptablesFirewall, renderRules, type FirewallExtras, type FirewallNetwork } from './iptables.js';

export class RenderOnlyFirewall extends IptablesFirewall {
  /** How many renders were asked for (each one renders both families). */
  renders = 0;

  override async apply(nets: readonly FirewallNetwork[], opts: { force?: boolean; extras?: FirewallExtras } = {}): Promise<void> {
    for (const family of [4, 6] as const) renderRules(nets, family, opts.extras);
    this.renders++;
  }

  override async drift(): Promise<string[]> {
    return [];
  }

  override async removeAll(): Promise<void> {}
}
