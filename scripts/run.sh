#!/usr/bin/env bash
# The main job: the firstcome HTTP service, on the embedded default unless REDIS_URL,
# KAFKA_BROKERS or DATABASE_URL say otherwise. Installs what building needs first
# (cmake and headers for the bundled librdkafka), then builds and runs in release mode.
#
#   scripts/run.sh [firstcome-server flags, see --help]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh build-deps
exec cargo run --release -p firstcome-server -- "$@"
