// `npm run bench [-- NAME…] [-- --quick]`: runs benchmarks and their anchors in the same run and
// prints one table of figures, ratios and targets; writes bench-results.json.

import { writeFileSync } from 'node:fs';
import { benchCni } from './cni.js';
import { benchDns } from './dns.js';
import { benchDatapath } from './datapath.js';
import { benchDocker } from './docker.js';
import { benchScale } from './scale.js';
import { benchIpam } from './ipam.js';
import { benchNetlink } from './netlink.js';
import { benchOverlay } from './overlay.js';
import type { BenchOptions, BenchResult } from './types.js';

const BENCHES: Record<string, (o: BenchOptions) => Promise<BenchResult[]>> = {
  netlink: benchNetlink,
  ipam: benchIpam,
  dns: benchDns,
  cni: benchCni,
  docker: benchDocker,
  scale: benchScale,
  datapath: benchDatapath,
  overlay: benchOverlay,
};

function ratio(r: BenchResult): number | null {
  if (r.ours === null || r.anchor === null || r.ours === 0 || r.anchor === 0) return null;
  return r.higherIsBetter ? r.ours / r.anchor : r.anchor / r.ours;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const names = args.filter((a) => !a.startsWith('--'));
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHES).join(', ')}`);
    process.exit(2);
  }
  const selected = names.length ? names : Object.keys(BENCHES);
  const results: BenchResult[] = [];
  for (const name of selected) {
    console.error(`running ${name}${quick ? ' (quick)' : ''}…`);
    results.push(...(await BENCHES[name]!({ quick })));
  }
  const rows = results.map((r) => {
    const x = ratio(r);
    return {
      figure: r.name,
      ours: r.ours === null ? 'n/a' : r.ours.toFixed(1),
      anchor: r.anchor === null ? 'n/a' : r.anchor.toFixed(1),
      ratio: x === null ? 'n/a' : `${x.toFixed(2)}x`,
      target: r.target === null ? 'report' : `${r.target}x`,
      met: x === null || r.target === null ? 'n/a' : x >= r.target ? 'yes' : 'no',
    };
  });
  console.table(rows);
  for (const r of results) {
    console.log(`anchor for "${r.name}": ${r.anchorCommand}`);
    if (r.note) console.log(`  note: ${r.note}`);
  }
  writeFileSync('bench-results.json', JSON.stringify({ when: new Date().toISOString(), quick, results: results.map((r) => ({ ...r, ratio: ratio(r) })) }, null, 2));
}

await main();
