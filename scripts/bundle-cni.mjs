// Bundles the standalone CNI entry (dist/bin/cni.js, as tsc emitted it) into one ES module,
// dist/bin/cni-standalone.js, which `tsnet cni install` points the native shim at.
//
// Why: without the daemon, every CNI call (ADD, DEL, CHECK, STATUS, VERSION) is a fresh Node
// process, and most of its time went to loading 93 modules (51 of ours) one file at a time: Node's ESM loader
// resolves and reads each, and every CommonJS package imported from ESM (pino, ip-num) is lexed
// for its exports first. One file skips all of that; the code is the same tsc output.
//
// Left outside the bundle: better-sqlite3 (a native addon found through `bindings`) and etcd3
// (grpc loads .proto files beside its own sources). Our own addon is found from the package root
// at run time (kernel/native.ts), which the bundle's location (dist/bin/, like the file it
// replaces) keeps the same.

import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

await build({
  entryPoints: [join(root, 'dist/bin/cni.js')],
  outfile: join(root, 'dist/bin/cni-standalone.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['better-sqlite3', 'etcd3'],
  // Bundled CommonJS packages call require() for Node's built-ins; an ES module has none.
  banner: { js: "import { createRequire as __tsnetCreateRequire } from 'node:module'; const require = __tsnetCreateRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
});
