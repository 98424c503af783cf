#!/usr/bin/env bash
# Long runs kept out of `npm test`: the load test with every cycle moving its veth into a sandbox
# (as dockerd does) and many more cycles, and the crash test with more kill -9 rounds.
#   TSNET_LOAD_CYCLES (default 50000), TSNET_CRASH_ROUNDS (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
npm run build
export TSNET_LOAD_MOVE=1
export TSNET_LOAD_CYCLES="${TSNET_LOAD_CYCLES:-50000}"
export TSNET_CRASH_ROUNDS="${TSNET_CRASH_ROUNDS:-100}"
exec npx vitest run test/e2e/load.test.ts test/e2e/crash.test.ts
