#!/usr/bin/env bash
# Open-loop load against a real `trellis serve` (cached and uncached), with the
# loadgen in benchmarks/loadgen. Usage: benchmarks/load.sh [tenants] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
tenants=${1:-100}
secs=${2:-8}
go build -o bin/trellis ./cmd/trellis
go build -o bin/loadgen ./benchmarks/loadgen
run() { # name port extra-serve-flags... -- extra-loadgen-flags...
  local name=$1 port=$2; shift 2
  local serve=() load=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do serve+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  load=("$@")
  bin/trellis serve --admin-key lk --addr 127.0.0.1:$port --log-level error "${serve[@]}" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fs 127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
  echo "== $name"
  GOMAXPROCS=1 bin/loadgen -url http://127.0.0.1:$port -key lk -seed -tenants "$tenants" -duration "${secs}s" "${load[@]}"
  curl -s 127.0.0.1:$port/metrics | grep -E '^trellis_check_cache_(hits|misses)_total' || true
  grep VmHWM /proc/$pid/status || true
  kill $pid; wait $pid 2>/dev/null || true
}
run cached 18190
run cached-1pct-writes 18191 -- -write-every 100
run uncached 18192 --cache-entries 0
