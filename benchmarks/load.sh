#!/usr/bin/env bash
# Open-loop load against real servers, each its own process, driven by the same
# load generator (benchmarks/loadgen) with the same Zipf requests: the HTTP ceiling
# (benchmarks/ceiling, a fixed {"allowed":true}), `trellis serve` cached, cached with
# 1 % writes and uncached, and OpenFGA over HTTP (benchmarks/openfga/cmd/openfga-serve,
# same model, data and keys; PEER=0 skips it: its first build takes minutes). With 2+ CPUs and taskset, the server runs on CPU 1 and the
# load generator on CPU 0 (PIN=0 to let both float over all CPUs).
# Usage: benchmarks/load.sh [tenants] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
tenants=${1:-100}
secs=${2:-8}
go build -o bin/trellis ./cmd/trellis
go build -o bin/loadgen ./benchmarks/loadgen
go build -o bin/ceiling ./benchmarks/ceiling
if [ "${PEER:-1}" = 1 ]; then (cd benchmarks/openfga && go build -o ../../bin/openfga-serve ./cmd/openfga-serve); fi
server_cpu=() load_cpu=()
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_cpu=(taskset -c 1) load_cpu=(taskset -c 0)
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(go env GOVERSION), load $(cut -d' ' -f1-3 /proc/loadavg); server: ${server_cpu[*]:-any CPU}; loadgen: ${load_cpu[*]:-any CPU}, GOMAXPROCS=1"
run() { # name port server-command... -- loadgen-flags...
  local name=$1 port=$2; shift 2
  local serve=() load=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do serve+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  load=("$@")
  "${server_cpu[@]}" "${serve[@]}" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -fs 127.0.0.1:$port/${ready:-readyz} >/dev/null && break; sleep 0.1; done
  if [ -n "${ids:-}" ]; then
    for _ in $(seq 300); do [ -s "$ids" ] && break; sleep 0.1; done
    . "$ids"
    load+=(-store "$OPENFGA_STORE" -model "$OPENFGA_MODEL")
  fi
  echo "== $name"
  GOMAXPROCS=1 "${load_cpu[@]}" bin/loadgen -url http://127.0.0.1:$port -duration "${secs}s" -server-pid $pid "${load[@]}" | tee -a "$out" | sed "s/^saturation/$name saturation/"
  curl -s 127.0.0.1:$port/metrics | grep -E '^trellis_check_cache_(hits|misses)_total' || true
  grep VmHWM /proc/$pid/status || true
  kill $pid; wait $pid 2>/dev/null || true
}
trellis() { local port=$1; shift; echo bin/trellis serve --admin-key lk --addr 127.0.0.1:$port --log-level error "$@"; }
run ceiling 18189 bin/ceiling -addr 127.0.0.1:18189 -- -tenants "$tenants"
run cached 18190 $(trellis 18190) -- -key lk -seed -tenants "$tenants"
run cached-1pct-writes 18191 $(trellis 18191) -- -key lk -seed -tenants "$tenants" -write-every 100
run uncached 18192 $(trellis 18192 --cache-entries 0) -- -key lk -seed -tenants "$tenants"
arms="ceiling cached cached-1pct-writes uncached"
if [ "${PEER:-1}" = 1 ]; then
  ids=$(mktemp -u)
  ready=healthz run openfga 18290 bin/openfga-serve -addr 127.0.0.1:18290 -tenants "$tenants" -ids-file "$ids" -- -target openfga -tenants "$tenants"
  rm -f "$ids"
  arms="$arms openfga"
fi
echo "== saturation throughput and server CPU per request, against the ceiling"
awk -v arms="$arms" '
/^saturation/ { for (i = 2; i <= NF; i++) if ($i == "req/s,") rate[++n] = $(i - 1) }
/^server CPU/ { cpu[n] = $5 }
END {
  split(arms, name, " ")
  for (i = 1; i <= n; i++)
    printf "%-20s %8.0f req/s  %.2fx ceiling   server %6.1f µs CPU/request  %.2fx ceiling\n", name[i], rate[i], rate[i] / rate[1], cpu[i], cpu[1] / cpu[i]
  if (name[n] == "openfga") printf "cached / openfga: %.1fx throughput, %.1fx server CPU per request\n", rate[2] / rate[n], cpu[n] / cpu[2]
}' "$out"
