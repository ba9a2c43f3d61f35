#!/usr/bin/env bash
# Open-loop load against real servers, each its own process, driven by the same
# load generator (benchmarks/loadgen) with the same Zipf requests: the HTTP ceiling
# (benchmarks/ceiling, a fixed {"allowed":true}), `trellis serve` cached, cached with
# 1 % writes and uncached, and OpenFGA over HTTP (benchmarks/openfga/cmd/openfga-serve,
# same model, data and keys; PEER=0 skips it: its first build takes minutes). With 2+ CPUs and taskset, the server runs on CPU 1 and the
# load generator on CPU 0 (PIN=0 to let both float over all CPUs).
# REPEAT=n runs the arms n times, interleaved, and the summary shows each arm's median.
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
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -f "$out"' EXIT # no server left on its port
logs=bin/load-logs # each server's output, for errors the load generator reports
mkdir -p "$logs"
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(go env GOVERSION), load $(cut -d' ' -f1-3 /proc/loadavg); server: ${server_cpu[*]:-any CPU}; loadgen: ${load_cpu[*]:-any CPU}, GOMAXPROCS=1"
run() { # name port server-command... -- loadgen-flags...
  local name=$1 port=$2; shift 2
  local serve=() load=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do serve+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  load=("$@")
  ${server_cpu[@]+"${server_cpu[@]}"} "${serve[@]}" >"$logs/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -fs 127.0.0.1:$port/${ready:-readyz} >/dev/null && break; sleep 0.1; done
  if [ -n "${ids:-}" ]; then
    for _ in $(seq 3000); do [ -s "$ids" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if [ ! -s "$ids" ]; then echo "$name: no store/model ids from the server; see $logs/$name.log" >&2; exit 1; fi
    . "$ids"
    load+=(-store "$OPENFGA_STORE" -model "$OPENFGA_MODEL")
  fi
  echo "== $name"
  GOMAXPROCS=1 ${load_cpu[@]+"${load_cpu[@]}"} bin/loadgen -url http://127.0.0.1:$port -duration "${secs}s" -server-pid $pid "${load[@]}" | sed "s/^/$name: /" | tee -a "$out"
  curl -s 127.0.0.1:$port/metrics | grep -E '^trellis_check_cache_(hits|misses)_total' || true
  grep VmHWM /proc/$pid/status || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
trellis() { local port=$1; shift; echo bin/trellis serve --admin-key lk --addr 127.0.0.1:$port --log-level error "$@"; }
arms="ceiling cached cached-1pct-writes uncached"
[ "${PEER:-1}" = 1 ] && arms="$arms openfga"
for rep in $(seq "${REPEAT:-1}"); do
  echo "### round $rep of ${REPEAT:-1}"
  run ceiling 18189 bin/ceiling -addr 127.0.0.1:18189 -- -tenants "$tenants"
  run cached 18190 $(trellis 18190) -- -key lk -seed -tenants "$tenants"
  run cached-1pct-writes 18191 $(trellis 18191) -- -key lk -seed -tenants "$tenants" -write-every 100
  run uncached 18192 $(trellis 18192 --cache-entries 0) -- -key lk -seed -tenants "$tenants"
  if [ "${PEER:-1}" = 1 ]; then
    ids=$(mktemp -u)
    ready=healthz run openfga 18290 bin/openfga-serve -addr 127.0.0.1:18290 -tenants "$tenants" -ids-file "$ids" -- -target openfga -tenants "$tenants"
    rm -f "$ids"
    unset ids
  fi
done
echo "== saturation throughput and server CPU per request against the ceiling (median of ${REPEAT:-1} rounds)"
awk -v arms="$arms" '
function ratio(a, b) { return b > 0 ? sprintf("%.2fx", a / b) : "n/a" }
function median(list,   v, n, i, j, t) {
  n = split(list, v, " ")
  if (n == 0) return 0
  for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{ arm = substr($1, 1, length($1) - 1) }
$2 == "saturation" { for (i = 3; i <= NF; i++) if ($i == "req/s,") rate[arm] = rate[arm] " " $(i - 1) }
$2 == "server" && $3 == "CPU" { cpu[arm] = cpu[arm] " " $6 }
END {
  n = split(arms, name, " ")
  for (i = 1; i <= n; i++) { r[i] = median(rate[name[i]]); c[i] = median(cpu[name[i]]) }
  for (i = 1; i <= n; i++)
    printf "%-20s %8.0f req/s  %s ceiling   server %6.1f µs CPU/request  %s ceiling   (rounds: req/s%s; µs%s)\n", name[i], r[i], ratio(r[i], r[1]), c[i], ratio(c[1], c[i]), rate[name[i]], cpu[name[i]]
  if (name[n] == "openfga") printf "cached / openfga: %s throughput, %s server CPU per request\n", ratio(r[2], r[n]), ratio(c[n], c[2])
}' "$out"
