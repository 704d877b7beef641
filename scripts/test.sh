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
