#!/usr/bin/env bash
# Runs every test with vitest, then prints one plain summary line ("N passed, N failed, N skipped")
# that CI tooling reads. Extra arguments go to vitest (e.g. a path filter).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-results
npx vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@"
status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(".test-results/vitest.json", "utf8"));
  const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  if (r.numTotalTests === 0) process.exit(1);
' || status=1
exit $status
