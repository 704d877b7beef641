#!/usr/bin/env bash
# Private test services for firstcome: Redis, PostgreSQL (and PgBouncer in front of it), MariaDB and a Kafka-protocol broker
# (tansu), each on a free loopback port with its state under one directory, so that
# fault tests may kill and restart them without touching anything else on the machine.
#
#   scripts/services.sh build-deps         install what building needs (cmake, headers), nothing else
#   scripts/services.sh install            install what building and testing need, start nothing
#   scripts/services.sh start DIR          install what is missing, start all, write DIR/env
#   scripts/services.sh stop DIR           stop all (idempotent)
#   scripts/services.sh start-one NAME DIR start one service of a test's own under DIR
#   scripts/services.sh kill NAME DIR      kill -9 one service (redis | postgres | kafka |
#                                          mariadb | sentinel: the primary the Sentinels
#                                          name now)
#   scripts/services.sh restart NAME DIR   start it again on the same port and storage
#                                          (Redis comes back empty: it keeps nothing on disk)
#
# `start-one sentinel DIR` starts a Redis primary, a replica and three Sentinels
# (quorum 2, a primary down after 1 s) and writes DIR/sentinel/url, a
# redis+sentinel:// URL for REDIS_URL; `kill sentinel DIR` kills the current primary.
#
# DIR/env holds `export` lines: REDIS_URL, DATABASE_URL, KAFKA_BROKERS, MYSQL_URL (a
# private MariaDB), PGBOUNCER_URL (PgBouncer in transaction mode in front of the
# PostgreSQL), FIRSTCOME_SERVICES_SCRIPT for tests that kill and restart a
# service, FIRSTCOME_TANSU_OPT_LEVEL (which build of the broker runs: 1 by default, 3
# for broker-bound benchmarks, set when running install and start), and SCHEMATHESIS
# (the API fuzzer from PyPI, in a virtualenv of its own, that tests run against the
# service's OpenAPI document), CHROMIUM and CHROMEDRIVER (Debian's chromium and
# chromium-driver, that the console's tests drive headless), PROMTOOL and PROMETHEUS (Debian's promtool, that checks and unit-tests
# the alerting rules, and the server, that one test runs against the service). Nothing already running on the machine is used.
set -euo pipefail

TANSU_VERSION=0.6.0
SCHEMATHESIS_VERSION=4.32.5
script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else die "need root to run: $*"; fi
}

apt_install() {
  log "installing $* from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 30000))
}

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$name did not listen on 127.0.0.1:$port within 30 s"
}

pg_bin() {
  local dir
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v initdb)")"; return
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && echo "$dir"
}

mariadbd_bin() {
  command -v mariadbd 2>/dev/null || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } || true
}

# The broker's features: only the SQLite storage (libsql) the tests run it on, nothing
# of the default set (dynostore, S3-style storage, was built too until 2026-11-27; it
# added no crate to the build, as tansu-schema pulls object_store anyway).
TANSU_FEATURES=libsql
# The broker's optimisation level (cargo's release profile), FIRSTCOME_TANSU_OPT_LEVEL to
# change it. 1 by default: measured on 2026-11-27 (2 cores, one build alone each), it
# builds in 6 min 57 s against 8 min 22 s at 3, and the Kafka tests ran as fast on it
# (9.1 to 9.8 s for the same seven, each level twice, alternated). Benchmarks bound by
# the broker were not measured on it: compare them with earlier figures at 3.
TANSU_OPT_LEVEL=${FIRSTCOME_TANSU_OPT_LEVEL:-1}

# Our build of tansu: the published release with scripts/tansu/<crate>/*.patch applied to
# each of its crates named there, TANSU_FEATURES and TANSU_OPT_LEVEL, named after all of
# them (the patches, features and level by their checksum), so neither a plain `tansu`
# on the machine nor a build with older patches, other features or another level is
# ever picked up.
tansu_dir() {
  local patches
  patches=$(cd "$(dirname "$script")"/tansu && { echo "features $TANSU_FEATURES"; \
    [ "$TANSU_OPT_LEVEL" = 3 ] || echo "opt-level $TANSU_OPT_LEVEL"; \
    for p in */*.patch; do echo "$p"; cat "$p"; done; } | sha256sum | cut -c 1-12)
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/firstcome/tansu-$TANSU_VERSION-$patches"
}
tansu_bin() {
  if [ -x "$(tansu_dir)/tansu" ]; then echo "$(tansu_dir)/tansu"; fi
}

# Builds tansu $TANSU_VERSION from its published sources, fetched by cargo from the
# configured registry, with our patches to its crates, and the versions its Cargo.lock
# pins (as `cargo install --locked` would). It builds beside the cache rather than in
# /tmp, which may be a small tmpfs; a build cut short is started afresh next time.
install_tansu() {
  local cargo_home=${CARGO_HOME:-$HOME/.cargo} work bin p crate patched name
  bin="$(tansu_dir)/tansu"
  work="$(tansu_dir).build"
  rm -rf "$work"
  mkdir -p "$work/fetch/src"
  crate_file() {
    crate=$(ls "$cargo_home"/registry/cache/*/"$1-$TANSU_VERSION.crate" 2>/dev/null | head -n 1)
    [ -n "$crate" ] || die "cargo fetched $1 $TANSU_VERSION but its .crate is not under $cargo_home/registry/cache"
    echo "$crate"
  }
  : >"$work/fetch/src/lib.rs"
  printf '%s\n' '[package]' 'name = "fetch-tansu"' 'version = "0.0.0"' 'edition = "2021"' \
    '[dependencies]' "tansu = { version = \"=$TANSU_VERSION\", default-features = false }" \
    '[workspace]' >"$work/fetch/Cargo.toml"
  cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2
  tar -xzf "$(crate_file tansu)" -C "$work"
  cargo fetch --quiet --locked --manifest-path "$work/tansu-$TANSU_VERSION/Cargo.toml" >&2
  echo '[patch.crates-io]' >>"$work/tansu-$TANSU_VERSION/Cargo.toml"
  for patched in "$(dirname "$script")"/tansu/*/; do
    name=$(basename "$patched")
    tar -xzf "$(crate_file "$name")" -C "$work"
    for p in "$patched"*.patch; do
      # git rather than patch(1), which a fresh Debian may lack; kept from looking for a
      # repository above, `git apply` patches the working directory.
      (cd "$work/$name-$TANSU_VERSION" && GIT_CEILING_DIRECTORIES="$work" git apply -p1 "$p") \
        || die "$p did not apply to $name $TANSU_VERSION"
    done
    echo "$name = { path = \"../$name-$TANSU_VERSION\" }" >>"$work/tansu-$TANSU_VERSION/Cargo.toml"
  done
  # Not --locked: the lock file changes for the patched crate only.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$TANSU_OPT_LEVEL \
    cargo build --release --no-default-features --features "$TANSU_FEATURES" \
    --manifest-path "$work/tansu-$TANSU_VERSION/Cargo.toml" --target-dir "$work/target" >&2
  # Into place in one step: an interrupted copy never passes for a build.
  mkdir -p "$(dirname "$bin")"
  install -m 0755 "$work/target/release/tansu" "$bin.partial"
  mv "$bin.partial" "$bin"
  rm -rf "$work"
}

# Headers and tools the workspace's C dependencies build with: rdkafka-sys builds the
# bundled librdkafka with cmake; librdkafka 2.12's cmake build includes curl/curl.h even
# with curl off (it only needs the header); zlib for message compression.
ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  [ -f /usr/include/curl/curl.h ] || [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
  [ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
  command -v c++ >/dev/null || missing+=(g++)
  command -v git >/dev/null || missing+=(git)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

schemathesis_bin() {
  echo "$HOME/.cache/firstcome/schemathesis-$SCHEMATHESIS_VERSION/bin/schemathesis"
}

install_schemathesis() {
  local venv
  venv=$(dirname "$(dirname "$(schemathesis_bin)")")
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
    || apt_install python3-venv
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
}

ensure_installed() {
  ensure_build_deps
  command -v redis-server >/dev/null || apt_install redis-server
  command -v redis-cli >/dev/null || apt_install redis-tools
  [ -n "$(pg_bin)" ] || apt_install postgresql
  command -v pgbouncer >/dev/null || apt_install pgbouncer
  { [ -n "$(mariadbd_bin)" ] && command -v mariadb-install-db >/dev/null && command -v mariadb >/dev/null; } \
    || apt_install mariadb-server mariadb-client
  # Without recommends: a headless test needs none of the desktop extras.
  command -v chromium >/dev/null || apt_install --no-install-recommends chromium
  # The console's tests drive Chromium through WebDriver.
  command -v chromedriver >/dev/null || apt_install --no-install-recommends chromium-driver
  # promtool checks and unit-tests the alerting rules of deploy/prometheus/; one test
  # runs the server against the service. Debian's package does not start it here.
  command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
  if [ ! -x "$(schemathesis_bin)" ]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI (about 30 s)"
    install_schemathesis
  fi
  if [ -z "$(tansu_bin)" ]; then
    log "building tansu $TANSU_VERSION with scripts/tansu/*/*.patch (about 7 minutes on 2 cores, once per machine)"
    install_tansu
  fi
}

# Runs a command as the PostgreSQL owner: the server refuses to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_redis() {
  local dir=$1 port
  mkdir -p "$dir/redis"
  port=$(cat "$dir/redis/port" 2>/dev/null || free_port)
  echo "$port" >"$dir/redis/port"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$dir/redis" --logfile "$dir/redis/redis.log" --daemonize no \
    --pidfile "$dir/redis/redis.pid" >/dev/null 2>&1 &
  echo $! >"$dir/redis/pid"
  wait_port "$port" redis
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  die "redis on port $port does not answer PING"
}

# A Redis of a Sentinel set: NAME under DIR/sentinel, extra arguments after.
start_sentinel_redis() {
  local dir=$1 name=$2 port
  shift 2
  mkdir -p "$dir/sentinel/$name"
  port=$(cat "$dir/sentinel/$name/port" 2>/dev/null || free_port)
  echo "$port" >"$dir/sentinel/$name/port"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$dir/sentinel/$name" --logfile "$dir/sentinel/$name/redis.log" "$@" >/dev/null 2>&1 &
  echo $! >"$dir/sentinel/$name/pid"
  wait_port "$port" "redis $name"
}

start_sentinel_set() {
  local dir=$1 primary port conf urls="" i
  start_sentinel_redis "$dir" primary
  primary=$(cat "$dir/sentinel/primary/port")
  start_sentinel_redis "$dir" replica --replicaof 127.0.0.1 "$primary"
  for i in 1 2 3; do
    mkdir -p "$dir/sentinel/s$i"
    port=$(cat "$dir/sentinel/s$i/port" 2>/dev/null || free_port)
    echo "$port" >"$dir/sentinel/s$i/port"
    conf="$dir/sentinel/s$i/sentinel.conf"
    printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor firstcome 127.0.0.1 %s 2\nsentinel down-after-milliseconds firstcome 1000\nsentinel failover-timeout firstcome 3000\n' \
      "$port" "$dir/sentinel/s$i" "$primary" >"$conf"
    redis-server "$conf" --sentinel --logfile "$dir/sentinel/s$i/sentinel.log" >/dev/null 2>&1 &
    echo $! >"$dir/sentinel/s$i/pid"
    wait_port "$port" "sentinel s$i"
    urls="$urls${urls:+,}127.0.0.1:$port"
  done
  echo "redis+sentinel://$urls/firstcome" >"$dir/sentinel/url"
  log "sentinel set: $(cat "$dir/sentinel/url")"
}

# kill -9 the server the Sentinels name as primary now.
kill_sentinel_primary() {
  local dir=$1 port="" name pid i
  for i in 1 2 3; do
    port=$(redis-cli -p "$(cat "$dir/sentinel/s$i/port" 2>/dev/null || echo 0)" \
      SENTINEL get-master-addr-by-name firstcome 2>/dev/null | sed -n 2p || true)
    [ -n "$port" ] && break
  done
  for name in primary replica; do
    if [ "$(cat "$dir/sentinel/$name/port" 2>/dev/null)" = "$port" ]; then
      pid=$(cat "$dir/sentinel/$name/pid" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      fi
      return 0
    fi
  done
  die "no primary of the sentinel set under $dir answers"
}

stop_sentinel_set() {
  local dir=$1 pidfile
  for pidfile in "$dir"/sentinel/*/pid; do
    [ -f "$pidfile" ] || continue
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

# A MariaDB server of our own (no grant tables: a private test server on loopback),
# with an empty database firstcome_test.
start_mariadb() {
  local dir=$1 port bin user=()
  bin=$(mariadbd_bin)
  [ -n "$bin" ] || die "mariadbd not found: run scripts/services.sh install"
  mkdir -p "$dir/mariadb"
  port=$(cat "$dir/mariadb/port" 2>/dev/null || free_port)
  echo "$port" >"$dir/mariadb/port"
  if [ "$(id -u)" = 0 ]; then user=(--user=root); fi
  if [ ! -d "$dir/mariadb/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$dir/mariadb/data" "${user[@]}" \
      --skip-test-db --auth-root-authentication-method=normal >"$dir/mariadb/install.log" 2>&1 \
      || die "mariadb-install-db failed: see $dir/mariadb/install.log"
  fi
  "$bin" --no-defaults --datadir="$dir/mariadb/data" "${user[@]}" --bind-address=127.0.0.1 \
    --port="$port" --socket="$dir/mariadb/mariadb.sock" --pid-file="$dir/mariadb/mariadb.pid" \
    --skip-grant-tables --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=64M \
    --log-error="$dir/mariadb/error.log" >/dev/null 2>&1 &
  echo $! >"$dir/mariadb/pid"
  wait_port "$port" mariadb
  for _ in $(seq 1 100); do
    mariadb -h 127.0.0.1 -P "$port" -u root -e 'CREATE DATABASE IF NOT EXISTS firstcome_test' 2>/dev/null && return 0
    sleep 0.1
  done
  die "mariadb on port $port does not answer"
}

start_postgres() {
  local dir=$1 bin port
  bin=$(pg_bin)
  mkdir -p "$dir/postgres"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir/postgres"; fi
  if [ ! -f "$dir/postgres/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/postgres/data" -U postgres -A trust --no-sync >"$dir/postgres-initdb.log" 2>&1 \
      || die "initdb failed: see $dir/postgres-initdb.log"
  fi
  port=$(cat "$dir/postgres.port" 2>/dev/null || free_port)
  echo "$port" >"$dir/postgres.port"
  # fsync off: these databases are scratch; a kill -9 of the server still keeps every
  # committed transaction, because the operating system does not crash.
  as_pg "$bin/pg_ctl" -D "$dir/postgres/data" -l "$dir/postgres/postgres.log" -w -t 60 start \
    -o "-p $port -k $dir/postgres -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" >/dev/null \
    || die "postgres did not start: see $dir/postgres/postgres.log"
}

# PgBouncer in transaction mode in front of DIR's PostgreSQL, as managed PostgreSQL
# services commonly put one: PGBOUNCER_URL, for tests of what a pool that moves
# sessions between server connections does to session state (the counter lease).
# Needs DIR's PostgreSQL (its port); refuses to run as root, so runs as its owner.
start_pgbouncer() {
  local dir=$1 port pg
  command -v pgbouncer >/dev/null || die "pgbouncer not found: run scripts/services.sh install"
  pg=$(cat "$dir/postgres.port" 2>/dev/null) || die "no PostgreSQL under $dir to put PgBouncer in front of"
  mkdir -p "$dir/pgbouncer"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pgbouncer"; fi
  port=$(cat "$dir/pgbouncer/port" 2>/dev/null || free_port)
  echo "$port" >"$dir/pgbouncer/port"
  echo '"postgres" ""' >"$dir/pgbouncer/users.txt"
  # Two server connections per database, so a client kept in a transaction leaves
  # another for the next; the startup parameters sqlx sends that 1.18 does not track
  # are ignored.
  cat >"$dir/pgbouncer/pgbouncer.ini" <<EOF2
[databases]
* = host=127.0.0.1 port=$pg
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/pgbouncer/users.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,IntervalStyle,search_path,options
logfile = $dir/pgbouncer/pgbouncer.log
pidfile = $dir/pgbouncer/pid
EOF2
  as_pg pgbouncer -d "$dir/pgbouncer/pgbouncer.ini" >/dev/null 2>&1 \
    || die "pgbouncer did not start: see $dir/pgbouncer/pgbouncer.log"
  wait_port "$port" "pgbouncer"
}

start_kafka() {
  local dir=$1 port advertised tansu
  tansu=$(tansu_bin)
  [ -n "$tansu" ] || die "tansu is not built: run scripts/services.sh install"
  mkdir -p "$dir/kafka"
  port=$(cat "$dir/kafka/port" 2>/dev/null || free_port)
  echo "$port" >"$dir/kafka/port"
  # A fault test puts a proxy in front of the broker: clients must then be told to
  # connect to the proxy's port (DIR/kafka/advertised_port), not the broker's own.
  advertised=$(cat "$dir/kafka/advertised_port" 2>/dev/null || echo "$port")
  # tansu reads the path of a sqlite:// URL relative to its working directory.
  (cd "$dir/kafka" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$advertised" --storage-engine "sqlite://tansu.db" \
    >>"$dir/kafka/tansu.log" 2>&1) &
  echo $! >"$dir/kafka/pid"
  wait_port "$port" "kafka (tansu)"
}


write_env() {
  local dir=$1
  {
    echo "export REDIS_URL=redis://127.0.0.1:$(cat "$dir/redis/port")/"
    echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$(cat "$dir/postgres.port")/postgres"
    echo "export KAFKA_BROKERS=127.0.0.1:$(cat "$dir/kafka/port")"
    echo "export MYSQL_URL=mysql://root@127.0.0.1:$(cat "$dir/mariadb/port")/firstcome_test"
    echo "export PGBOUNCER_URL=postgres://postgres@127.0.0.1:$(cat "$dir/pgbouncer/port")/postgres"
    echo "export FIRSTCOME_SERVICES_SCRIPT=$script"
    # So that a restart through the script later runs the same build of the broker.
    echo "export FIRSTCOME_TANSU_OPT_LEVEL=$TANSU_OPT_LEVEL"
    echo "export SCHEMATHESIS=$(schemathesis_bin)"
    echo "export CHROMIUM=$(command -v chromium)"
    echo "export CHROMEDRIVER=$(command -v chromedriver)"
    echo "export PROMTOOL=$(command -v promtool)"
    echo "export PROMETHEUS=$(command -v prometheus)"
  } >"$dir/env"
}

kill_one() {
  local name=$1 dir=$2 pid
  case $name in
    redis|kafka|mariadb|pgbouncer)
      pid=$(cat "$dir/$name/pid" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      fi
      rm -f "$dir/$name/pid" ;;
    postgres)
      pid=$(head -n 1 "$dir/postgres/data/postmaster.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        # Backends first: orphaned ones would hold the shared memory and block a restart.
        pkill -9 -P "$pid" 2>/dev/null || true
        kill -9 "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      fi ;;
    sentinel) kill_sentinel_primary "$dir" ;;
    *) die "unknown service $name (redis | postgres | kafka | mariadb | sentinel | pgbouncer)" ;;
  esac
}

start_one() {
  case $1 in
    redis) start_redis "$2" ;;
    postgres) start_postgres "$2" ;;
    kafka) start_kafka "$2" ;;
    mariadb) start_mariadb "$2" ;;
    sentinel) start_sentinel_set "$2" ;;
    pgbouncer) start_pgbouncer "$2" ;;
    *) die "unknown service $1 (redis | postgres | kafka | mariadb | sentinel | pgbouncer)" ;;
  esac
}

stop_all() {
  local dir=$1 bin
  [ -d "$dir" ] || return 0
  kill_one kafka "$dir"
  kill_one redis "$dir"
  kill_one mariadb "$dir"
  kill_one pgbouncer "$dir"
  stop_sentinel_set "$dir"
  bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$dir/postgres/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/postgres/data" -m immediate -w stop >/dev/null 2>&1 || kill_one postgres "$dir"
  fi
}

main() {
  local cmd=${1:-} dir
  case $cmd in
    start)
      dir=${2:?usage: services.sh start DIR}
      mkdir -p "$dir"
      chmod 755 "$dir"
      ensure_installed
      start_redis "$dir"
      start_postgres "$dir"
      start_pgbouncer "$dir"
      start_mariadb "$dir"
      start_kafka "$dir"
      write_env "$dir"
      log "running: $(tr '\n' ' ' <"$dir/env" | sed 's/export //g')" ;;
    start-one)
      dir=${3:?usage: services.sh start-one NAME DIR}
      mkdir -p "$dir"
      chmod 755 "$dir"
      start_one "${2:?service}" "$dir" ;;
    build-deps) ensure_build_deps ;;
    install) ensure_installed ;;
    stop) stop_all "${2:?usage: services.sh stop DIR}" ;;
    kill) kill_one "${2:?service}" "${3:?usage: services.sh kill NAME DIR}" ;;
    restart)
      [ "${2:-}" != sentinel ] || die "restart is not for the sentinel set: stop DIR, then start-one sentinel DIR"
      kill_one "${2:?service}" "${3:?usage: services.sh restart NAME DIR}"
      start_one "$2" "$3" ;;
    # The comment block at the top of this file, whole.
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$script"; exit 2 ;;
  esac
}

main "$@"
