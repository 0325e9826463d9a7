#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs every check.
#   ./scripts/test.sh            everything
#   FUZZ_SECONDS=60 ./scripts/test.sh   fuzz each target longer (default 10 s; 0 skips fuzzing
#                                       and so fails the run: it is not a full one)
#   SPINDLE_TEST_DEADLINE=300 ./scripts/test.sh   a test running longer fails (default 600 s)
# Exit code is non-zero if any step failed; the last line says how many steps passed.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
# Per-test deadline (seconds) for the Rust tests (scripts/test_deadline.py), the JS suites
# (node --test-timeout) and the Python suite (pytest-timeout): a deadlock fails its test
# instead of hanging the run.
export SPINDLE_TEST_DEADLINE=${SPINDLE_TEST_DEADLINE:-600}
passed=0
failed=0
failures=()

step() {
  local name=$1
  shift
  echo
  echo "==> $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "<== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "<== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

# Fails when `package`'s normal dependency tree lists a package matching `pattern` (or when
# cargo tree fails or does not list the package at all).
tree_excludes() {
  local package=$1 pattern=$2 tree forbidden
  tree=$(cargo tree -p "$package" -e normal --prefix none --format '{p}') || {
    echo "cargo tree failed"
    return 1
  }
  echo "$tree" | grep -q "^$package " || { echo "cargo tree did not list $package"; return 1; }
  forbidden=$(echo "$tree" | grep -E "^($pattern) " | sort -u)
  if [ -n "$forbidden" ]; then
    echo "$package must not depend on:"
    echo "$forbidden"
    return 1
  fi
}

hub_is_pure() {
  # spindle-hub (and spindle-config below it) are pure: no runtime, no sockets
  # (docs/architecture.md §2).
  local runtime='tokio|mio|quinn|quinn-proto|hyper|socket2|async-std|smol'
  tree_excludes spindle-config "$runtime" && tree_excludes spindle-hub "$runtime" &&
    echo "spindle-config and spindle-hub have no runtime or socket dependency"
}

slim_edge() {
  # The slim `spindle-edge` binary carries no core, broker client, backend proxy or server API.
  tree_excludes spindle-edge 'spindle-core|fred|async-nats|tokio-postgres|hyper-rustls' &&
    echo "spindle-edge has no core, broker, proxy or server-API dependency"
}

one_crypto_provider() {
  # ring only (DEPENDENCIES.md): aws-lc next to ring makes rustls panic at start.
  if cargo tree --workspace -e normal --prefix none | grep -q '^aws-lc'; then
    echo "aws-lc crept into the dependency tree:"
    cargo tree --workspace -i aws-lc-rs -e normal || true
    return 1
  fi
  echo "no aws-lc in the tree"
}

fuzz_briefly() {
  if [ "$FUZZ_SECONDS" = 0 ]; then
    # A skipped step is not a passed one: say so, and let the run fail.
    echo "FUZZ_SECONDS=0: fuzzing skipped, so this is not a full run"
    return 1
  fi
  if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz not installed, installing it from crates.io"
    cargo install cargo-fuzz --locked || return 1
  fi
  local targets
  targets=$(cd gateway-proto/fuzz && cargo fuzz list) || { echo "cargo fuzz list failed"; return 1; }
  if [ -z "$targets" ]; then
    echo "cargo fuzz list found no target"
    return 1
  fi
  local target
  for target in $targets; do
    echo "--- fuzz $target for ${FUZZ_SECONDS}s"
    # cargo fuzz needs nightly-only rustc flags; RUSTC_BOOTSTRAP allows them on stable, for
    # this build alone. New corpus entries go to a scratch dir, not the checked-in corpus.
    local scratch
    scratch=$(mktemp -d)
    (cd gateway-proto/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 2>&1 | tail -n 3) || return 1
    rm -rf "$scratch"
  done
}

# What the tree looks like to git (tracked changes and untracked files): the tests must leave it
# as they found it (no golden file rewritten, no stray output committed by accident).
# The per-test deadline itself: a test that never ends is killed and named, and fails the run.
deadline_kills_a_hung_test() {
  local out rc
  out=$(scripts/test_deadline.py 65 -- \
    cargo test -q -p spindle-tests --test deadline_probe -- --ignored 2>&1)
  rc=$?
  echo "$out" | tail -n 4
  [ "$rc" -eq 124 ] || { echo "expected exit status 124, got $rc"; return 1; }
  echo "$out" | grep -q "over the 65 s per-test deadline: deadline_probe_never_ends" ||
    { echo "the hung test was not named"; return 1; }
}

tree_state() {
  { git status --porcelain=v1 --untracked-files=all; git diff; } | sha256sum
}

tree_unchanged() {
  local now
  now=$(tree_state)
  if [ "$now" != "$TREE_BEFORE" ]; then
    echo "the tests changed the working tree:"
    git status --short
    return 1
  fi
  echo "the working tree is as the tests found it"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Broker tests run against the real servers; start them when they are installed but down.
# A server that cannot be started makes its tests fail loudly (they never skip).
services() {
  local ok=0
  if ! port_open 6379; then
    echo "Redis is down on 127.0.0.1:6379: starting it"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || ok=1
  fi
  if ! port_open 4222; then
    echo "NATS is down on 127.0.0.1:4222: starting it"
    mkdir -p /var/lib/nats-server 2>/dev/null
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || ok=1
  fi
  if ! port_open 5432; then
    echo "PostgreSQL is down on 127.0.0.1:5432: starting it"
    pg_ctlcluster 15 main start || ok=1
  fi
  for _ in $(seq 50); do port_open 6379 && port_open 4222 && port_open 5432 && break; sleep 0.2; done
  port_open 6379 || { echo "Redis is not reachable on 127.0.0.1:6379"; ok=1; }
  port_open 4222 || { echo "NATS is not reachable on 127.0.0.1:4222"; ok=1; }
  port_open 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; ok=1; }
  # The broker tests use database `test` as user postgres (trust auth on 127.0.0.1).
  if port_open 5432 && ! psql -h 127.0.0.1 -U postgres -d test -Atqc 'SELECT 1' >/dev/null 2>&1; then
    echo "PostgreSQL: cannot use database test as postgres on 127.0.0.1:5432"; ok=1
  fi
  [ "$ok" -eq 0 ] && echo "Redis, NATS and PostgreSQL are up"
}

TREE_BEFORE=$(tree_state)
step "services (Redis, NATS, PostgreSQL)" services
step "format" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "hub purity" hub_is_pure
step "slim edge" slim_edge
step "one crypto provider" one_crypto_provider
# The integration tests in tests/ start the real binary: build it first.
step "build the server" cargo build -p spindle --bin spindle -p spindle-edge --bin spindle-edge
# --no-fail-fast: one failing test binary must not hide what the others would report.
step "the per-test deadline kills a hung test" deadline_kills_a_hung_test
step "unit and integration tests" \
  scripts/test_deadline.py "$SPINDLE_TEST_DEADLINE" -- cargo test --workspace --no-fail-fast
# The edge's and the core's suites again over a link that encodes every message, delays it by
# a seeded random time and reorders across lanes and streams (spindle_mesh::network): nothing
# may depend on one in-process queue happening to be FIFO.
step "edge and core over the network-like link" \
  scripts/test_deadline.py "$SPINDLE_TEST_DEADLINE" -- \
  env SPINDLE_TEST_LINK=network cargo test -p spindle-edge -p spindle-core --no-fail-fast
step "benches build" cargo bench --workspace --no-run
step "golden frames: real SDKs accept our replies" gateway-proto/tests/golden/capture/replay.sh
step "real SDKs against spindle serve (centrifuge-js, centrifuge-python, cent)" tests/sdk/run.sh --no-build
step "centrifuge-js in headless Chromium (WebTransport)" tests/browser/run.sh --no-build
step "fuzz each decoder" fuzz_briefly
step "the tests left the tree unchanged" tree_unchanged

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed step: %s\n' "${failures[@]}"
fi
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
