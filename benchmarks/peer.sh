#!/usr/bin/env bash
# Trellis against OpenFGA (embedded, memory store, check cache on) on the same model,
# data and Zipf keys, in one invocation on one machine. OpenFGA lives in its own module
# (benchmarks/openfga) so its dependencies never enter Trellis's build.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-3}
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(go env GOVERSION)"
go test -run '^$' -bench 'CheckInProcess' -benchmem -count "$count" ./benchmarks/
(cd benchmarks/openfga && go test -run '^$' -bench 'OpenFGACheck' -benchmem -count "$count" .)
