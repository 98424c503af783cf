import { describe, expect, it } from 'vitest';
import { missingCapabilities } from '../../core/capabilities.js';

describe('capabilities', () => {
  it('names each missing capability', () => {
    expect(missingCapabilities('CapEff:\t000001fffeffffff\n')).toEqual([]);
    // 0x...ffffeffeff: bits 12 (NET_ADMIN) and 21 (SYS_ADMIN) cleared
    const eff = (0x1fffeffffffn & ~(1n << 12n) & ~(1n << 21n)).toString(16);
    expect(missingCapabilities(`CapEff:\t${eff}\n`).map((c) => c.name)).toEqual(['CAP_NET_ADMIN', 'CAP_SYS_ADMIN']);
  });
});
