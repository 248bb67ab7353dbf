#!/usr/bin/env bash
# Runs OpsGuard's real-model test (tests/llm_real_model.rs) against a local
# llama.cpp server with SmolLM2-135M (see llm/README.md), and stops the
# server afterwards even when the test fails.
#
#   llm/ci-test.sh            # from anywhere; exit status is the test's
#
# The test binary is built before the server starts, so compiling does not
# compete with the model for the two cores. If a server started by
# llm/start.sh was already running (same pid file), it is reused and left
# running. Environment: everything llm/start.sh reads (OPSGUARD_LLM_PORT,
# OPSGUARD_LLM_THREADS, OPSGUARD_LLM_PIDFILE, ...), plus
# OPSGUARD_LLM_TEST_TIMEOUT (seconds per request, default 120).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
export OPSGUARD_LLM_PIDFILE="$PIDFILE" OPSGUARD_LLM_LOG="$LOG"

say() { echo "[llm-ci] $*" >&2; }

cd "$ROOT"
say "building the real-model test"
cargo test --test llm_real_model --no-run

# Did someone else start the server? Then leave it running afterwards.
OWNED=1
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE" 2>/dev/null || echo 0)" 2>/dev/null; then
  OWNED=0
fi
cleanup() {
  local rc=$?
  if [ "$OWNED" = 1 ]; then
    "$HERE/stop.sh" || say "stop.sh failed (ignored)"
  fi
  if [ "$rc" != 0 ] && [ -f "$LOG" ]; then
    say "last server log lines:"
    tail -n 20 "$LOG" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URL="$("$HERE/start.sh")"
say "server at $URL"
case "$URL" in
  http://127.0.0.1:*) ;;
  *) say "refusing a non-loopback URL: $URL"; exit 1 ;;
esac

OPSGUARD_LLM_URL="$URL" OPSGUARD_LLM_TEST_TIMEOUT="${OPSGUARD_LLM_TEST_TIMEOUT:-120}" \
  cargo test --test llm_real_model -- --include-ignored --test-threads=1 --nocapture
