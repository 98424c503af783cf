// Prints the last vitest run's plain summary line ("N passed, N failed, N skipped"), read by CI.
// Exits non-zero when no test ran.
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync(new URL('../.test-results/vitest.json', import.meta.url), 'utf8'));
const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
if (r.numTotalTests === 0) process.exit(1);
