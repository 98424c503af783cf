// The join plan of a driver whose containers route through a gateway on their own subnet.

import type { JoinPlan } from '../driver.js';

/**
 * `gateways` are "ip/len". Internal networks get no gateway: Docker would otherwise install a
 * default route through it. `ifPrefix`: the network's container_iface_prefix, if it has one.
 */
export function gatewayPlan(ifName: string, gateways: readonly string[], internal: boolean, ifPrefix?: string): JoinPlan {
  const plan: JoinPlan = { ifName, staticRoutes: [], ...(ifPrefix ? { ifPrefix } : {}) };
  if (internal) return plan;
  const gw4 = gateways.find((g) => !g.includes(':'));
  const gw6 = gateways.find((g) => g.includes(':'));
  if (gw4) plan.gateway4 = gw4.split('/')[0]!;
  if (gw6) plan.gateway6 = gw6.split('/')[0]!;
  return plan;
}
