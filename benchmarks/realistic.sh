#!/usr/bin/env bash
# make bench-realistic: issue 19's workload at a realistic size, each server its
# own process over HTTP (benchmarks/realistic: the ceiling, Trellis on memdb and
# on SpiceDB's PostgreSQL datastore, SpiceDB's own server through its HTTP gateway
# (bin/trellis spicedb serve) and OpenFGA on PostgreSQL), PostgreSQL started
# from the system's binaries. Builds the binaries, then runs the driver pinned
# to CPU 0 (the servers go to CPU 1) and keeps its output in
# benchmarks/last-realistic-run.txt. Arguments go to the driver, e.g.
#   benchmarks/realistic.sh -tenants 200 -users 20000 -docs 12000
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/trellis ./cmd/trellis
go build -o bin/ceiling ./benchmarks/ceiling
go build -o bin/realistic ./benchmarks/realistic
(cd benchmarks/openfga && go build -o ../../bin/openfga-serve ./cmd/openfga-serve) # the first build takes minutes
pin=()
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin=(taskset -c 0); fi
${pin[@]+"${pin[@]}"} bin/realistic -pin="${PIN:-1}" "$@" | tee benchmarks/last-realistic-run.txt
