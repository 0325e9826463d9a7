#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs every check.
#   ./scripts/test.sh            everything
#   FUZZ_SECONDS=60 ./scripts/test.sh   fuzz each target longer (default 10 s; 0 skips fuzzing)
# Exit code is non-zero if any step failed; the last line says how many steps passed.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
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

hub_is_pure() {
  # spindle-hub is the pure domain: no runtime, no sockets (DESIGN.md §2).
  local forbidden
  forbidden=$(cargo tree -p spindle-hub -e normal --prefix none --format '{p}' |
    grep -E '^(tokio|mio|quinn|quinn-proto|hyper|socket2|async-std|smol) ' | sort -u)
  if [ -n "$forbidden" ]; then
    echo "spindle-hub must stay pure, but depends on:"
    echo "$forbidden"
    return 1
  fi
  echo "spindle-hub has no runtime or socket dependency"
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
    echo "FUZZ_SECONDS=0: fuzzing not requested"
    return 0
  fi
  if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz not installed, installing it from crates.io"
    cargo install cargo-fuzz --locked || return 1
  fi
  local target
  for target in $(cd gateway-proto/fuzz && cargo fuzz list); do
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

step "format" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "hub purity" hub_is_pure
step "one crypto provider" one_crypto_provider
# The integration tests in tests/ start the real binary: build it first.
step "build the server" cargo build -p spindle --bin spindle
step "unit and integration tests" cargo test --workspace
step "benches build" cargo bench --workspace --no-run
step "golden frames: real SDKs accept our replies" gateway-proto/tests/golden/capture/replay.sh
step "real SDKs against spindle serve (centrifuge-js, centrifuge-python, cent)" tests/sdk/run.sh --no-build
step "fuzz each decoder" fuzz_briefly

echo
if [ "$failed" -gt 0 ]; then
  printf 'failed step: %s\n' "${failures[@]}"
fi
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
