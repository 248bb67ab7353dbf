# Shared by llm/start.sh, stop.sh and ci-test.sh (sourced, not executed):
# where the server's pid file and log live. A private directory (0700, ours):
# /run/opsguard-llm as root, else $XDG_RUNTIME_DIR or ~/.cache; never a
# predictable name in the world-writable /tmp, where another user could
# plant a symlink for root to write through.
# shellcheck shell=bash
# shellcheck source=../scripts/safe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/safe.sh"

llm_state_dir() {
  if [ -n "${OPSGUARD_LLM_STATE_DIR:-}" ]; then
    echo "$OPSGUARD_LLM_STATE_DIR"
  elif [ "$(id -u)" -eq 0 ]; then
    echo /run/opsguard-llm
  elif [ -n "${XDG_RUNTIME_DIR:-}" ]; then
    echo "$XDG_RUNTIME_DIR/opsguard-llm"
  else
    echo "${HOME:?}/.cache/opsguard-llm"
  fi
}

LLM_STATE_DIR="$(llm_state_dir)"
PIDFILE="${OPSGUARD_LLM_PIDFILE:-$LLM_STATE_DIR/server.pid}"
LOG="${OPSGUARD_LLM_LOG:-$LLM_STATE_DIR/server.log}"
