#!/usr/bin/env bash
# centrifuge-js in headless Chromium against a real spindle binary (WebTransport over HTTP/3).
#
#   tests/browser/run.sh              install what is missing, build spindle, run the suite
#   tests/browser/run.sh --no-build   use the existing binary (also implied by SPINDLE_BIN=...)
#
# Installs idempotently: Debian's `chromium` (apt-get, when no chromium is on PATH and
# $CHROMIUM is unset) and `npm ci` into tests/browser/node_modules (centrifuge, playwright-core;
# skipped when the stamp of the lock file's hash matches). playwright-core drives the system
# Chromium and downloads no browser. Needs Node >= 20 + npm, openssl (test certificates), cargo.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    *)
      echo "unknown argument: $arg (want --no-build)" >&2
      exit 2
      ;;
  esac
done

ensure_chromium() {
  if [[ -n "${CHROMIUM:-}" ]]; then
    [[ -x "$CHROMIUM" ]] || { echo "CHROMIUM=$CHROMIUM is not executable" >&2; return 1; }
    return 0
  fi
  command -v chromium >/dev/null && return 0
  echo "==> installing Debian's chromium (apt-get)"
  if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
    echo "chromium is missing and this user cannot apt-get install it" >&2
    return 1
  fi
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null || return 1
  command -v chromium >/dev/null
}

ensure_js_deps() {
  command -v node >/dev/null || { echo "node is required (Node >= 20)" >&2; return 1; }
  command -v npm >/dev/null || { echo "npm is required" >&2; return 1; }
  command -v openssl >/dev/null || { echo "openssl is required (test certificates)" >&2; return 1; }
  local want
  want="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -d "$HERE/node_modules" || "$(cat "$HERE/node_modules/.spindle-stamp" 2>/dev/null)" != "$want" ]]; then
    echo "==> installing npm dependencies (npm ci) into $HERE/node_modules"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" >"$HERE/node_modules/.spindle-stamp"
  fi
}

ensure_chromium || exit 1
ensure_js_deps || exit 1
if [[ -z "${SPINDLE_BIN:-}" && $build -eq 1 ]]; then
  echo "==> cargo build -p spindle --bin spindle"
  (cd "$REPO" && cargo build -p spindle --bin spindle) || exit 1
fi
echo "==> headless Chromium suite (node --test)"
# A test running past the deadline fails (scripts/test.sh sets it for the whole run).
cd "$HERE" && node --test --test-concurrency=1 --test-timeout="$((${SPINDLE_TEST_DEADLINE:-600} * 1000))" test/*.test.mjs
