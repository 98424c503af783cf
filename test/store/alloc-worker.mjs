// Child process for the multi-process store tests: allocates `count` addresses from one pool of a
// shared store and prints each as a line. Uses the compiled build (npm test builds first).
import { Ipam } from '../../dist/ipam/ipam.js';
import { SqliteStore } from '../../dist/store/sqlite-store.js';

const [dbPath, poolId, count, tag] = process.argv.slice(2);
const store = new SqliteStore(dbPath);
const ipam = new Ipam(store);
for (let i = 0; i < Number(count); i++) {
  const ip = await ipam.requestAddress(poolId, { owner: `${tag}-${i}` });
  process.stdout.write(`${ip}\n`);
}
await store.close();
