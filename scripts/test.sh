#!/usr/bin/env bash
# The whole test suite against real services: starts private Redis, PostgreSQL, MariaDB and
# Kafka-protocol (tansu) instances on free loopback ports (installing what is missing),
# runs every test of the workspace, then stops the services, pass or fail.
#
#   scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

services=$(mktemp -d "${TMPDIR:-/tmp}/firstcome-services.XXXXXX")
cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    # What the shared services saw: a failing test's cause may be there (a broker that
    # panicked, a database that refused connections), and the directory goes next.
    for log in "$services"/kafka/tansu.log "$services"/redis/redis.log \
      "$services"/postgres/postgres.log "$services"/mariadb/error.log; do
      [ -f "$log" ] || continue
      echo "[test] ${log#"$services"/}: panics and errors, then its last lines" >&2
      grep -a -i -E 'panicked|FATAL|ERROR' "$log" | tail -n 20 >&2 || true
      tail -n 15 "$log" >&2
    done
  fi
  scripts/services.sh stop "$services" || true
  rm -rf "$services"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/services.sh start "$services"
# shellcheck disable=SC1091
source "$services/env"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest" >&2
  cargo install --locked cargo-nextest >&2
fi

# nextest does not run doc tests; the examples in doc comments are tests too.
cargo test --workspace --all-features --doc
cargo nextest run --workspace --all-features --no-fail-fast "$@"
