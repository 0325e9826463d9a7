#!/usr/bin/env bash
# The official SDKs against a real spindle binary: centrifuge-js (node --test), centrifuge-js
# again on the split (a core and two edges), its map suite on Redis and PostgreSQL, then
# centrifuge-python + cent (pytest), each in JSON and Protobuf.
#
#   tests/sdk/run.sh              install deps if needed, build spindle, run every suite
#   tests/sdk/run.sh js           only the JS suite (or: js-split, js-brokers, python)
#   tests/sdk/run.sh --no-build   use the existing binary (also implied by SPINDLE_BIN=...)
#
# Dependencies are installed idempotently: `npm ci` into tests/sdk/js/node_modules and a venv at
# tests/sdk/python/.venv (pip install -r requirements.txt), each skipped when the stamp of the
# lock file's hash matches. Needs Node >= 20 + npm, Python >= 3.10, cargo; reaches only the npm
# registry and PyPI (and crates.io through cargo). Exit status is non-zero if anything failed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
JS="$HERE/js"
PY="$HERE/python"

build=1
# Per-test deadline in seconds: a test that hangs fails instead of stalling the run.
deadline=${SPINDLE_TEST_DEADLINE:-600}
suites=()
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    js | js-split | js-brokers | python) suites+=("$arg") ;;
    -h | --help)
      sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (want js, js-split, js-brokers, python, --no-build)" >&2
      exit 2
      ;;
  esac
done
[[ ${#suites[@]} -eq 0 ]] && suites=(js js-split js-brokers python)
wants() { [[ " ${suites[*]} " == *" $1 "* ]]; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

ensure_js_deps() {
  command -v node >/dev/null || { echo "node is required (Node >= 20)" >&2; return 1; }
  command -v npm >/dev/null || { echo "npm is required" >&2; return 1; }
  local want
  want="$(sha "$JS/package-lock.json")"
  if [[ ! -d "$JS/node_modules" || "$(cat "$JS/node_modules/.spindle-stamp" 2>/dev/null)" != "$want" ]]; then
    echo "==> installing npm dependencies (npm ci) into $JS/node_modules"
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" >"$JS/node_modules/.spindle-stamp"
  fi
}

ensure_py_deps() {
  command -v python3 >/dev/null || { echo "python3 is required (>= 3.10)" >&2; return 1; }
  local want
  want="$(sha "$PY/requirements.txt")"
  if [[ ! -x "$PY/.venv/bin/python" || "$(cat "$PY/.venv/.spindle-stamp" 2>/dev/null)" != "$want" ]]; then
    echo "==> installing Python dependencies into $PY/.venv"
    if [[ ! -x "$PY/.venv/bin/python" ]]; then
      python3 -m venv "$PY/.venv" || return 1
    fi
    "$PY/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PY/requirements.txt" || return 1
    echo "$want" >"$PY/.venv/.spindle-stamp"
  fi
}

build_spindle() {
  if [[ -n "${SPINDLE_BIN:-}" ]]; then
    echo "==> using SPINDLE_BIN=$SPINDLE_BIN (not building)"
    return 0
  fi
  if [[ $build -eq 0 ]]; then
    echo "==> --no-build: using the existing binary"
    return 0
  fi
  echo "==> cargo build -p spindle --bin spindle -p spindle-tests --bin spindle-grpc-test-backend"
  local out exe
  out="$(mktemp)"
  (cd "$REPO" && cargo build -p spindle --bin spindle -p spindle-tests --bin spindle-grpc-test-backend \
    --message-format=json-render-diagnostics) >"$out"
  local rc=$?
  # The path cargo actually wrote (honours CARGO_TARGET_DIR and cargo config).
  exe="$(sed -n 's/.*"executable":"\([^"]*\/spindle\)".*/\1/p' "$out" | tail -n 1)"
  rm -f "$out"
  if [[ $rc -ne 0 ]]; then
    echo "cargo build failed (exit $rc)" >&2
    return 1
  fi
  if [[ -n "$exe" ]]; then
    export SPINDLE_BIN="$exe"
    echo "==> built $SPINDLE_BIN"
  fi
}

declare -A result
failed=0

deps_ok=1
if wants js || wants js-split || wants js-brokers; then ensure_js_deps || { echo "JS dependency installation failed" >&2; result[js]="FAILED (dependencies)"; deps_ok=0; failed=1; }; fi
if wants python; then ensure_py_deps || { echo "Python dependency installation failed" >&2; result[python]="FAILED (dependencies)"; deps_ok=0; failed=1; }; fi

if ! build_spindle; then
  echo
  echo "SDK suites not run: the spindle binary did not build"
  exit 1
fi

if wants js && [[ -z "${result[js]:-}" ]]; then
  echo
  echo "==> centrifuge-js $(node -p "require('$JS/node_modules/centrifuge/package.json').version") (node --test)"
  # A test running past the deadline fails (scripts/test.sh sets it for the whole run).
  (cd "$JS" && node --test --test-concurrency=1 --test-timeout="$((deadline * 1000))" test/*.test.mjs)
  rc=$?
  if [[ $rc -eq 0 ]]; then result[js]="passed"; else result[js]="FAILED (exit $rc)"; failed=1; fi
fi

# The same suites against the split (a core and two edges over QUIC, clients on an edge, the API
# on the core): what they check must hold there exactly as on `spindle serve`.
if wants js-split && [[ -z "${result[js-split]:-}" ]]; then
  echo
  echo "==> centrifuge-js on the split (SPINDLE_TOPOLOGY=split): streams, maps, shared poll, stream proxy, sdk, proxy, token refresh"
  (cd "$JS" && SPINDLE_TOPOLOGY=split node --test --test-concurrency=1 \
    --test-timeout="$((deadline * 1000))" test/streams.test.mjs test/map.test.mjs \
    test/shared_poll.test.mjs test/stream_proxy.test.mjs test/sdk.test.mjs test/proxy.test.mjs \
    test/token_refresh.test.mjs)
  rc=$?
  if [[ $rc -eq 0 ]]; then result[js-split]="passed"; else result[js-split]="FAILED (exit $rc)"; failed=1; fi
fi

# Map subscriptions again with map storage in Redis and in PostgreSQL (SPINDLE_TEST_ENGINE, the
# local servers), on the split (a core, two edges): changes go through Redis PUB/SUB and through
# the PostgreSQL outbox.
if wants js-brokers && [[ -z "${result[js-brokers]:-}" ]]; then
  rc=0
  for engine in redis postgres; do
    echo
    echo "==> centrifuge-js map subscriptions on $engine (SPINDLE_TEST_ENGINE=$engine, split)"
    (cd "$JS" && SPINDLE_TEST_ENGINE=$engine SPINDLE_TOPOLOGY=split node --test --test-concurrency=1 \
      --test-timeout="$((deadline * 1000))" test/map.test.mjs) || rc=$?
  done
  if [[ $rc -eq 0 ]]; then result[js-brokers]="passed"; else result[js-brokers]="FAILED (exit $rc)"; failed=1; fi
fi

if wants python && [[ -z "${result[python]:-}" ]]; then
  echo
  echo "==> centrifuge-python $("$PY/.venv/bin/python" -c "import importlib.metadata as m; print(m.version('centrifuge-python'))") + cent (pytest)"
  # A wide terminal keeps "could not start spindle" visible in pytest's one-line summaries.
  (cd "$PY" && COLUMNS="${COLUMNS:-200}" .venv/bin/python -m pytest --timeout="$deadline")
  rc=$?
  if [[ $rc -eq 0 ]]; then result[python]="passed"; else result[python]="FAILED (exit $rc)"; failed=1; fi
fi

echo
for s in "${suites[@]}"; do
  echo "SDK suite $s: ${result[$s]:-not run}"
done
[[ $deps_ok -eq 1 && $failed -eq 0 ]]
