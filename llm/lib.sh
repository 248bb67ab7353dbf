# Shared by llm/start.sh, stop.sh and ci-test.sh (sourced, not executed):
# where the server's pid file and log live. A private directory (0700, ours):
# /run/opsguard-llm as root, else $XDG_RUNTIME_DIR or ~/.cache; never a
# predictable name in the world-writable /tmp, where another user could
# plant a symlink for root to write through.
# shellcheck shell=bash
# shellcheck source=../scripts/safe.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/safe.sh"

LLM_STATE_DIR="$(run_state_dir opsguard-llm "${OPSGUARD_LLM_STATE_DIR:-}")"
PIDFILE="${OPSGUARD_LLM_PIDFILE:-$LLM_STATE_DIR/server.pid}"
LOG="${OPSGUARD_LLM_LOG:-$LLM_STATE_DIR/server.log}"
