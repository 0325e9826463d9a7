#!/usr/bin/env bash
# Runs the load-generator figures of docs/benchmarks.md against a release build, each only
# once the machine is quiet (other builds share the cores and would disturb the numbers).
#
#   cargo build --release -p spindle -p spindle-bench
#   bench/scripts/figures.sh [out-dir]        # default: target/bench-figures
#
# Environment: QUIET_PCT (default 15: % of one core the machine may be busy before a run),
# QUIET_MAX_WAIT (default 1800 s), FIGURES (default "1 2 3 4 5"; extras: proto ladder rb4k
# storm-own).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bench="$target/release/spindle-bench"
out="${1:-$target/bench-figures}"
mkdir -p "$out"

busy_pct() { # machine CPU busy over 3 s, % of one core
  local a b
  a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
  local busy=$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))
  echo $(( busy * 100 / 3 / $(getconf CLK_TCK) ))
}

wait_quiet() {
  local waited=0 pct
  while pct=$(busy_pct); [ "$pct" -gt "${QUIET_PCT:-15}" ]; do
    if [ "$waited" -ge "${QUIET_MAX_WAIT:-1800}" ]; then
      echo "machine still ${pct}% busy after ${waited}s; running anyway" >&2
      return
    fi
    echo "machine ${pct}% busy; waiting for it to be quiet" >&2
    sleep 20; waited=$((waited + 23))
  done
}

run() { # name, args...
  local name="$1"; shift
  wait_quiet
  echo "== $name: spindle-bench $*" | tee "$out/$name.txt"
  "$bench" "$@" >>"$out/$name.txt" 2>"$out/$name.log"
  cat "$out/$name.txt"
}

for figure in ${FIGURES:-1 2 3 4 5}; do
  case "$figure" in
    1) run fig1-fanout-1k fanout --subscribers 1000 --rate 200 --duration 20 --size 128 ;;
    2) run fig2-fanout-10k fanout --subscribers 10000 --rate 20 --duration 20 --size 128 ;;
    3) run fig3-idle-10k idle --clients 10000 --wait 30 ;;
    4) run fig4-history-publish-batch history-publish --mode batch --batch-size 100 --concurrency 4 --channels 1000 --duration 10
       run fig4-history-publish-single history-publish --mode single --concurrency 8 --channels 1000 --duration 10 ;;
    5) run fig5-reconnect-storm reconnect-storm --clients 5000 --channels 500 --missed 20 ;;
    # Extra data points (not goals): Protobuf, a latency-vs-rate ladder, the storm with one
    # channel per client, and the idle figure with a small WebSocket read buffer (a config key,
    # no code change).
    proto) run fig1-fanout-1k-protobuf --format protobuf fanout --subscribers 1000 --rate 200 --duration 20 --size 128 ;;
    ladder) for rate in 25 50 100 150; do
        run "ladder-1k-$rate" fanout --subscribers 1000 --rate "$rate" --duration 20 --size 128
      done ;;
    storm-own) run fig5-reconnect-storm-own-channels reconnect-storm --clients 5000 --channels 0 --missed 20 ;;
    rb4k) run fig3-idle-10k-rb4k --server-config '{"websocket":{"read_buffer_size":4096}}' idle --clients 10000 --wait 30 ;;
    # Issue 16: map synchronization and shared-poll backend load.
    maps) run map-sync-10k map-sync --keys 10000 --runs 10 --page-size 100 ;;
    poll) run shared-poll-1k-100 shared-poll --clients 1000 --keys 100 --interval-ms 1000 --intervals 10
      run shared-poll-1k-100-split --split 2 shared-poll --clients 1000 --keys 100 --interval-ms 1000 --intervals 10 ;;
  esac
done
