#!/usr/bin/env bash
# Stop the server started by llm/start.sh. Idempotent: succeeds if nothing runs.
#   OPSGUARD_LLM_PIDFILE (default: server.pid in the private dir of llm/lib.sh)
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

say() { echo "[opsguard-llm] $*" >&2; }

# 0 if PID is a running (non-zombie) process. (A zombie is already dead; in
# some containers PID 1 reaps orphans only every second or two.)
alive() {
  local pid="$1" state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ "$state" != "Z" ] && [ "$state" != "X" ]
}

if [ ! -f "$PIDFILE" ]; then
  say "not running (no $PIDFILE)"
  exit 0
fi
PID="$(cat "$PIDFILE" 2>/dev/null || true)"

# Only signal our own server, never a recycled pid.
if ! alive "$PID" || ! grep -qa serve.py "/proc/$PID/cmdline" 2>/dev/null; then
  say "not running (stale pid file)"
  rm -f "$PIDFILE"
  exit 0
fi

kill -TERM "$PID" 2>/dev/null || true
for _ in $(seq 1 100); do # up to 10 s for a clean shutdown
  alive "$PID" || break
  sleep 0.1
done
if alive "$PID"; then
  say "pid $PID ignored SIGTERM; sending SIGKILL"
  kill -KILL "$PID" 2>/dev/null || true
  sleep 0.2
fi
rm -f "$PIDFILE"
say "stopped (pid $PID)"
