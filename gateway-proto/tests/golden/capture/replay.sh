#!/usr/bin/env bash
# Replays the golden transcripts: server.mjs sends the recorded out files verbatim (the bytes
# the Rust encoder wrote there) and the unchanged SDK drivers assert what they see.
#   ./replay.sh                  # all four combinations
#   ./replay.sh py-protobuf ...  # some of them
# Installs the dependencies first when they are missing or stale (quick no-op otherwise).
set -uo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
ensure_deps || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }
run_all replay "$@"
