# Shared by capture.sh and replay.sh (sourced, not run).
# shellcheck shell=bash

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GOLDEN="$(cd "$HERE/.." && pwd)"
COMBOS_ALL=(js-json js-protobuf py-json py-protobuf)

sha() { sha256sum "$1" | cut -d' ' -f1; }

# ensure_deps [force]: npm ci into capture/node_modules and a venv at capture/.venv with
# requirements.txt. Without "force" each is skipped when the stamp written after the last
# successful install matches the lock file, so a second run costs nothing.
ensure_deps() {
  local force="${1:-}"
  command -v node >/dev/null || { echo "node is required (Node 20)" >&2; return 1; }
  command -v python3 >/dev/null || { echo "python3 is required (3.11)" >&2; return 1; }
  local want
  want="$(sha "$HERE/package-lock.json")"
  if [[ -n "$force" || ! -d "$HERE/node_modules" || "$(cat "$HERE/node_modules/.golden-stamp" 2>/dev/null)" != "$want" ]]; then
    echo "installing npm dependencies (npm ci) into $HERE/node_modules" >&2
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >&2) || return 1
    echo "$want" >"$HERE/node_modules/.golden-stamp"
  fi
  want="$(sha "$HERE/requirements.txt")"
  if [[ -n "$force" || ! -x "$HERE/.venv/bin/python" || "$(cat "$HERE/.venv/.golden-stamp" 2>/dev/null)" != "$want" ]]; then
    echo "installing Python dependencies into $HERE/.venv" >&2
    if [[ ! -x "$HERE/.venv/bin/python" ]]; then
      python3 -m venv "$HERE/.venv" || return 1
    fi
    "$HERE/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" >&2 || return 1
    echo "$want" >"$HERE/.venv/.golden-stamp"
  fi
}

sdk_version() {
  case "$1" in
    js) node -p "require('$HERE/node_modules/centrifuge/package.json').version" ;;
    py) "$HERE/.venv/bin/python" -c "import importlib.metadata as m; print(m.version('centrifuge-python'))" ;;
  esac
}

# run_combo <capture|replay> <sdk-format>: starts server.mjs in that mode, runs the matching
# driver against it and waits for both. Prints one line; on failure also the logs. Returns 0 on
# success.
run_combo() {
  local mode="$1" combo="$2"
  local sdk="${combo%%-*}" format="${combo#*-}"
  local dir="$GOLDEN/$combo"
  local logs
  logs="$(mktemp -d)"
  local server_args=("--$mode" "$dir")
  if [[ "$mode" == capture ]]; then
    server_args+=(--sdk "$sdk" --sdk-version "$(sdk_version "$sdk")" --format "$format")
  elif [[ ! -f "$dir/transcript.json" ]]; then
    echo "FAIL $combo: no transcript at $dir/transcript.json"
    rm -rf "$logs"
    return 1
  fi

  node "$HERE/server.mjs" "${server_args[@]}" >"$logs/server.out" 2>"$logs/server.err" &
  local spid=$! port="" i
  for i in $(seq 1 100); do
    port="$(awk '/^LISTENING /{print $2; exit}' "$logs/server.out")"
    [[ -n "$port" ]] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  local drc=1 src
  if [[ -n "$port" ]]; then
    local url="ws://127.0.0.1:$port/connection/websocket"
    if [[ "$sdk" == js ]]; then
      timeout 30 node "$HERE/drive_js.mjs" --url "$url" --format "$format" >"$logs/driver.out" 2>"$logs/driver.err"
    else
      timeout 30 "$HERE/.venv/bin/python" "$HERE/drive_py.py" --url "$url" --format "$format" >"$logs/driver.out" 2>"$logs/driver.err"
    fi
    drc=$?
  else
    echo "server did not start" >"$logs/driver.err"
  fi
  # The server exits by itself once the flow / the transcript is complete (it is not waited
  # for when the driver failed already).
  local waits=50
  [[ $drc -ne 0 ]] && waits=5
  for i in $(seq 1 "$waits"); do
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$spid" 2>/dev/null && kill -TERM "$spid" 2>/dev/null
  wait "$spid"
  src=$?

  local ok=0
  if [[ $drc -eq 0 && $src -eq 0 ]]; then
    echo "PASS $combo ($mode): $(tail -n 1 "$logs/driver.out")"
  else
    ok=1
    echo "FAIL $combo ($mode): driver exit $drc, server exit $src"
    sed 's/^/    driver: /' "$logs/driver.err" | tail -n 20
    grep -E 'FAIL|WARNING|MISMATCH|Error' "$logs/server.err" | sed 's/^/    server: /' | tail -n 20
  fi
  # Semantic warnings of the replay server are worth seeing even when the SDK accepted the bytes.
  if [[ $ok -eq 0 ]] && grep -q WARNING "$logs/server.err"; then
    grep WARNING "$logs/server.err" | sed 's/^/    server: /'
  fi
  rm -rf "$logs"
  return $ok
}

# run_all <mode> [combo...]: runs the combos (default: all four), prints the summary line.
run_all() {
  local mode="$1"
  shift
  local combos=("$@")
  [[ ${#combos[@]} -eq 0 ]] && combos=("${COMBOS_ALL[@]}")
  local passed=0 failed=0 c
  for c in "${combos[@]}"; do
    if [[ ! " ${COMBOS_ALL[*]} " == *" $c "* ]]; then
      echo "FAIL $c: unknown combination (want one of ${COMBOS_ALL[*]})"
      failed=$((failed + 1))
      continue
    fi
    if run_combo "$mode" "$c"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}
