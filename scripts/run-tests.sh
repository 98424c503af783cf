#!/usr/bin/env bash
# Runs every test with vitest, then prints one plain summary line ("N passed, N failed, N skipped")
# that CI tooling reads. Extra arguments go to vitest (e.g. a path filter).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-results
npx vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@"
status=$?
node scripts/test-summary.mjs || status=1
exit $status
