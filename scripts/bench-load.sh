#!/usr/bin/env bash
# Runs the load tool against the service in several configurations, alternated in one
# session, and prints one table: the machine's speed drifts by up to 20% within minutes,
# so only runs taken side by side are compared.
#
#   scripts/bench-load.sh [VARIANT...]
#
# A VARIANT is NAME=STACK[:BINARY[:EXTRA SERVICE FLAGS]]:
#   STACK     full (Redis + Kafka (tansu) + PostgreSQL, private ones from services.sh,
#             one process `--role all`), split (the same with `--role api` and a second
#             process `--role worker`: the service's CPU is then the API's alone) or
#             embedded (memory counter, SQLite file, the SQL queue)
#   BINARY    the service to run (default target/release/firstcome-server): an earlier
#             build copied aside compares two versions
#   FLAGS     more firstcome-server flags, e.g. `--role api` or `--kafka-linger-ms 5`
# Default variants: `full=full embedded=embedded`.
#
# Settings (environment): BENCH_ROUNDS (2: each variant runs this many times, in turn),
# BENCH_USERS / BENCH_CAP / BENCH_REQUESTS (100000 each: every apply accepted),
# BENCH_CONCURRENCY (256), BENCH_OUT (a new directory under /tmp: one JSON summary and
# one HTML page per run, the service's output, and the services' state).
#
# Each run gets a fresh PostgreSQL database, Kafka topic and Redis keyspace, or a fresh
# SQLite file, so no run reads what an earlier one left. The load tool checks every run
# (issued = min(cap, applicants), nobody holds two) and the script stops at a failed one.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${BENCH_ROUNDS:-2}
users=${BENCH_USERS:-100000}
cap=${BENCH_CAP:-100000}
requests=${BENCH_REQUESTS:-100000}
concurrency=${BENCH_CONCURRENCY:-256}
out=${BENCH_OUT:-$(mktemp -d /tmp/firstcome-bench.XXXXXX)}
token=bench-admin-token-1
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(full=full embedded=embedded)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in target/release/load; do
  [ -x "$tool" ] || die "$tool is missing: cargo build --release -p firstcome-server -p load"
done

mkdir -p "$out"
# mktemp makes the folder 0700; run as root, the harness starts PostgreSQL as the
# postgres user, which must reach the data folder inside it.
chmod 755 "$out"
services="$out/services"
server_pid=""
worker_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  [ -z "$worker_pid" ] || kill "$worker_pid" 2>/dev/null || true
  scripts/services.sh stop "$services" >/dev/null 2>&1 || true
}
trap cleanup EXIT

needs_services=false
for variant in "${variants[@]}"; do
  case "${variant#*=}" in full* | split*) needs_services=true ;; esac
done
if $needs_services; then
  scripts/services.sh start "$services" >/dev/null
  # shellcheck disable=SC1091
  source "$services/env"
  command -v psql >/dev/null || die "psql (PostgreSQL's client) is needed for a fresh database per run"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Starts the service for one run (setting server_pid, worker_pid, server_url and
# database_url, which the load tool checks the run's coupons in; not in a
# subshell, so that those reach the caller) and waits until it answers /readyz.
start_server() {
  local run=$1 stack=$2 binary=$3 extra=$4 port
  port=$(free_port)
  local flags=(--identity trusted-clients)
  case $stack in
    full | split)
      psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS bench_$run" -c "CREATE DATABASE bench_$run" >/dev/null 2>&1
      redis-cli -u "$REDIS_URL" FLUSHALL >/dev/null
      database_url="${DATABASE_URL%/*}/bench_$run"
      flags+=(--redis-url "$REDIS_URL" --kafka-brokers "$KAFKA_BROKERS" --kafka-create-topics
        --kafka-topic "bench-$run-tickets" --kafka-dlq-topic "bench-$run-dead"
        --database-url "$database_url") ;;&
    split | full) ;;
    embedded)
      database_url="sqlite://$out/$run.db?mode=rwc"
      flags+=(--database-url "$database_url") ;;
    *) die "unknown stack $stack (full, split or embedded)" ;;
  esac
  local shared=("${flags[@]}")
  flags+=(--bind "127.0.0.1:$port")
  [ "$stack" != split ] || flags+=(--role api)
  # shellcheck disable=SC2086
  env -u REDIS_URL -u KAFKA_BROKERS -u DATABASE_URL ADMIN_TOKEN=$token \
    "$binary" "${flags[@]}" $extra >"$out/$run.service.log" 2>&1 &
  server_pid=$!
  local i
  for i in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      server_url="http://127.0.0.1:$port"
      if [ "$stack" = split ]; then
        # After the API: two processes migrating a fresh database at once collide.
        # shellcheck disable=SC2086
        env -u REDIS_URL -u KAFKA_BROKERS -u DATABASE_URL \
          "$binary" "${shared[@]}" $extra --role worker --bind "127.0.0.1:$(free_port)" \
          >"$out/$run.worker.log" 2>&1 &
        worker_pid=$!
      fi
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || die "the service of run $run exited: see $out/$run.service.log"
    sleep 0.1
  done
  die "the service of run $run did not become ready: see $out/$run.service.log"
}

# The pids of the services' processes, as the load tool's --pid flags.
service_pids() {
  $needs_services || return 0
  echo "--pid redis=$(cat "$services/redis/pid") --pid broker=$(cat "$services/kafka/pid")"
  echo "--pid postgres=$(head -n 1 "$services/postgres/data/postmaster.pid")"
}

runs=()
for round in $(seq 1 "$rounds"); do
  for variant in "${variants[@]}"; do
    name=${variant%%=*}
    IFS=: read -r stack binary extra <<<"${variant#*=}"
    binary=${binary:-target/release/firstcome-server}
    [ -x "$binary" ] || die "$binary is missing: cargo build --release -p firstcome-server"
    run="${name//[^a-zA-Z0-9]/_}_$round"
    log "round $round/$rounds: $name ($stack, $binary ${extra:-})"
    start_server "$run" "$stack" "$binary" "${extra:-}"
    url=$server_url
    pids=""
    [ "$stack" = embedded ] || pids=$(service_pids)
    [ -z "$worker_pid" ] || pids="$pids --pid worker=$worker_pid"
    # shellcheck disable=SC2086
    target/release/load --url "$url" --admin-token "$token" --cap "$cap" --users "$users" \
      --requests "$requests" --concurrency "$concurrency" --quiet --database-url "$database_url" \
      $pids --json "$out/$run.json" --html "$out/$run.html" >"$out/$run.load.log" 2>&1 \
      || die "run $run failed its check: see $out/$run.load.log"
    kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
    server_pid=""
    if [ -n "$worker_pid" ]; then kill "$worker_pid" && wait "$worker_pid" 2>/dev/null || true; fi
    worker_pid=""
    runs+=("$name=$out/$run.json")
  done
done

python3 - "${runs[@]}" <<'EOF'
import json, sys
rows = []
for arg in sys.argv[1:]:
    name, path = arg.split("=", 1)
    with open(path) as f:
        run = json.load(f)
    accepted = run["outcomes"].get("accepted", {})
    cpu = run.get("cpu_us_per_accepted_apply", {})
    rows.append((name, run["requests_per_second"], accepted.get("p50_ms"), accepted.get("p99_ms"), cpu))
names = sorted({n for r in rows for n in r[4]})
print("| variant | requests/s | accepted p50 / p99 ms | " + " | ".join(f"{n} CPU µs/accepted" for n in names) + " |")
print("| --- " * (3 + len(names)) + "|")
for name, rps, p50, p99, cpu in rows:
    fmt = lambda v: "-" if v is None else f"{v:.0f}"
    print(f"| {name} | {rps:,.0f} | {fmt(p50)} / {fmt(p99)} | " + " | ".join(fmt(cpu.get(n)) for n in names) + " |")
EOF
log "runs, pages and logs: $out"
