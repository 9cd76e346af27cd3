# Sourced by scripts/bench-postgres and scripts/bench-postgres-cpu: Belfry
# nodes on a fresh database of the machine's PostgreSQL (created here,
# dropped on exit), with NATS between them when there are several.
# Environment: BELFRY_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432),
# NATS_URL (default nats://127.0.0.1:4222), PG_AUTO_EXPLAIN (off or on:
# PostgreSQL logs every statement's plan and executor time, with per-node
# timings when on; needs superuser).
pg="${BELFRY_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
nats="${NATS_URL:-nats://127.0.0.1:4222}"
key=bfy_sk_bench-admin-key-0123456789abcdefghijklmnopq
export BELFRY_BENCH_ADMIN_KEY=$key
db="belfry_bench_$$"
pids=(); urls=(); dirs=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null || true
  rm -rf "${dirs[@]}"
}
trap cleanup EXIT

# start_postgres_nodes BIN_DIR PORT...: one node per port, each ready
# before the next starts; fills pids, urls (--url per node) and dirs.
start_postgres_nodes() {
  local bin=$1; shift
  psql -q "$pg/postgres" -c "CREATE DATABASE $db" >/dev/null
  if [ -n "${PG_AUTO_EXPLAIN:-}" ]; then
    # Every statement's executor time in PostgreSQL's log, uninstrumented
    # (scripts/lib/bulk-statement-times reads the bulk statements' back).
    psql -q "$pg/postgres" -c "ALTER DATABASE $db SET session_preload_libraries = 'auto_explain'" \
      -c "ALTER DATABASE $db SET auto_explain.log_min_duration = 0" \
      -c "ALTER DATABASE $db SET auto_explain.log_analyze = $PG_AUTO_EXPLAIN" >/dev/null
  fi
  local port dir args
  for port in "$@"; do
    dir=$(mktemp -d); dirs+=("$dir")
    args=(serve --listen "127.0.0.1:$port" --data-dir "$dir" --database "$pg/$db")
    if [ $# -gt 1 ]; then args+=(--nats "$nats" --nats-subject "belfry.bench.$$"); fi
    BELFRY_STARTER_RULES=false BELFRY_LOG=warn BELFRY_ADMIN_KEY=$key \
      "$bin/belfry" "${args[@]}" >"$dir/server.log" 2>&1 &
    pids+=($!); urls+=(--url "http://127.0.0.1:$port")
    for _ in $(seq 150); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
}
