#!/usr/bin/env bash
# The topology of deploy/docker-compose.yaml as processes on loopback (`make cluster`):
# one PostgreSQL (the system's binaries, track_commit_timestamp on), two SpiceDB servers on
# its database (`trellis spicedb serve`: SpiceDB's server from the pinned module, postgres
# datastore, one preshared key) and two Trellis nodes in remote mode, one per SpiceDB, with
# Watch, sharing the directory store, the issuer and the keys. The demo is loaded once.
# Ctrl-C stops everything and removes the data (KEEP=1 keeps the directory).
#
# Ports (override in the environment): PGPORT=55432, SPICEDB_PORTS="50051 50052",
# TRELLIS_PORTS="8081 8082" (node A, node B, as in the compose file). CLUSTER_DIR holds the
# data and logs (default: a new temporary directory); TRELLIS_BIN runs that binary instead
# of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077 # the logs hold the admin key (the demo tour) and a token: this user's only

pgport=${PGPORT:-55432}
read -r sdb_a sdb_b <<<"${SPICEDB_PORTS:-50051 50052}"
read -r node_a node_b <<<"${TRELLIS_PORTS:-8081 8082}"
dir=${CLUSTER_DIR:-$(mktemp -d /tmp/trellis-cluster.XXXXXX)}
mkdir -p "$dir/logs"

pids=() names=()
cleanup() {
  trap - INT TERM EXIT
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do # Trellis first, PostgreSQL last
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "data and logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name command... — in the background, output to logs/<name>.log
  local name=$1; shift
  "$@" >"$dir/logs/$name.log" 2>&1 &
  pids+=($!) names+=("$name")
}

fail() {
  echo "cluster: $1" >&2
  [ -n "${2:-}" ] && tail -n 20 "$dir/logs/$2.log" >&2
  exit 1
}

wait_for() { # name probe... — poll until the probe succeeds, at most 60 s; fail if name exits
  local name=$1; shift
  local pid=${pids[${#pids[@]} - 1]}
  for _ in $(seq 600); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || fail "$name exited during start-up; its log:" "$name"
    sleep 0.1
  done
  fail "$name not ready within 60 s; its log:" "$name"
}

secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# PostgreSQL: PATH first, else Debian's newest /usr/lib/postgresql/<version>/bin (as store/pgtest).
pgbin=
if command -v initdb >/dev/null && command -v postgres >/dev/null; then
  pgbin=$(dirname "$(readlink -f "$(command -v postgres)")") # pg_isready and createdb sit beside it
else
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -rn); do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then pgbin=$d; break; fi
  done
fi
[ -n "$pgbin" ] || fail "PostgreSQL not found: apt-get install postgresql (or put initdb and postgres on PATH)"
command -v curl >/dev/null || fail "curl is needed to wait for the nodes"

trellis=${TRELLIS_BIN:-}
if [ -z "$trellis" ]; then
  echo "building trellis…"
  go build -o "$dir/trellis" ./cmd/trellis
  trellis=$dir/trellis
fi

# PostgreSQL refuses to run as root: as root, run it as the postgres system user.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || fail "running as root and there is no postgres user to run PostgreSQL as"
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups env -C "$dir/pg") # exec, no fork: the pid is the server's
  chmod 711 "$dir"
  mkdir -p "$dir/pg" && chown postgres: "$dir/pg"
fi
"${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/logs/initdb.log" 2>&1 ||
  "${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$dir/logs/initdb.log" 2>&1 ||
  fail "initdb failed:" initdb
start postgres "${as_pg[@]}" "$pgbin/postgres" -D "$dir/pg/data" -p "$pgport" \
  -c listen_addresses=127.0.0.1 -c unix_socket_directories="$dir/pg" \
  -c track_commit_timestamp=on -c max_connections=200
wait_for postgres "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pgport" -U postgres
"$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres trellis
db="postgres://postgres@127.0.0.1:$pgport/trellis?sslmode=disable"

# Secrets shared by the nodes, as deploy/.env.example lists them.
spicedb_key=$(secret) admin_key=$(secret) audit_key=$(secret) kek=$(secret)
issuer="http://127.0.0.1:$node_a" # one public URL for every node (behind a load balancer: its https URL)

# SpiceDB's migrations and the directory's, once (the compose file's migrate service).
env -u TRELLIS_DATABASE_URL -u TRELLIS_STORE_URL "$trellis" migrate --database-url "$db" --store-url "$db" >"$dir/logs/migrate.log" 2>&1 ||
  fail "migrations failed:" migrate

for sdb in "spicedb-1 $sdb_a" "spicedb-2 $sdb_b"; do
  read -r name port <<<"$sdb"
  start "$name" env SPICEDB_GRPC_PRESHARED_KEY="$spicedb_key" "$trellis" spicedb serve \
    --grpc-addr "127.0.0.1:$port" --datastore-engine postgres --datastore-conn-uri "$db"
done

# Trellis nodes: remote SpiceDB (Watch is on with an endpoint), the store on PostgreSQL.
# Node A loads the demo; node B starts after it and finds it in the store.
node() { # name port spicedb-port
  start "$1" env -i PATH="$PATH" HOME="${HOME:-/}" \
    TRELLIS_ADMIN_KEY="$admin_key" TRELLIS_AUDIT_KEY="$audit_key" TRELLIS_KEY_ENCRYPTION_KEY="$kek" \
    TRELLIS_SPICEDB_TOKEN="$spicedb_key" TRELLIS_ISSUER="$issuer" \
    "$trellis" serve --addr "127.0.0.1:$2" --spicedb-endpoint "127.0.0.1:$3" --spicedb-insecure \
    --store postgres --store-url "$db&pool_max_conns=16" --demo
  wait_for "$1" curl -fs "http://127.0.0.1:$2/readyz"
}
node trellis-a "$node_a" "$sdb_a"
node trellis-b "$node_b" "$sdb_b"

cat <<EOF

Trellis cluster on loopback (data and logs in $dir):
  node A  http://127.0.0.1:$node_a   (SpiceDB 127.0.0.1:$sdb_a)
  node B  http://127.0.0.1:$node_b   (SpiceDB 127.0.0.1:$sdb_b)
  PostgreSQL  $db   (directory store and SpiceDB's datastore)
  admin key   $admin_key
  issuer      $issuer   (the same on both nodes)

Try: a write on A, the answer on B.
  export TRELLIS_ADMIN_KEY=$admin_key
  curl -s -H "Authorization: Bearer \$TRELLIS_ADMIN_KEY" -H 'Content-Type: application/json' -X PUT http://127.0.0.1:$node_a/v1/organizations/globex/members/iris -d '{"roles":["admin"]}'
  curl -s -H "Authorization: Bearer \$TRELLIS_ADMIN_KEY" http://127.0.0.1:$node_b/v1/organizations/globex/members/iris
  curl -s -H "Authorization: Bearer \$TRELLIS_ADMIN_KEY" http://127.0.0.1:$node_b/v1/schema | head -c 200; echo

Logs: $dir/logs/{postgres,spicedb-1,spicedb-2,trellis-a,trellis-b}.log
Ctrl-C stops all five processes.
EOF

# Until Ctrl-C, or until one of the processes ends (then say which, and stop the rest).
set +e
wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[i]}" 2>/dev/null; then echo "cluster: ${names[i]} exited ($status); its log:" >&2; tail -n 20 "$dir/logs/${names[i]}.log" >&2; fi
done
exit 1
