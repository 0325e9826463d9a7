#!/usr/bin/env bash
# Re-captures the golden transcripts: installs the pinned SDKs (npm ci, venv), then runs every
# SDK driver against server.mjs in capture mode, rewriting ../<sdk>-<format>/.
#   ./capture.sh                 # all four combinations
#   ./capture.sh js-json ...     # some of them
set -uo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
ensure_deps force || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }
run_all capture "$@"
