#!/usr/bin/env bash
# A throwaway Prometheus Alertmanager for the notification tests
# (tests/notify_alertmanager.rs), from Debian's prometheus-alertmanager
# package (installed with apt-get if missing):
#
#   scripts/alertmanager.sh start   -> prints e.g. http://127.0.0.1:41234 on stdout
#   scripts/alertmanager.sh stop    -> stops it and removes its files
#
# It listens on loopback only, on a free port, with no cluster
# (--cluster.listen-address=), a config that routes every alert to a
# receiver that sends nothing, and a fresh storage directory each start.
# Its pid file, config, storage and log live in a private directory (0700):
# /run/opsguard-alertmanager as root, else $XDG_RUNTIME_DIR or ~/.cache;
# OPSGUARD_ALERTMANAGER_STATE_DIR overrides it. Idempotent: start prints
# the URL of one already running; stop succeeds if none runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=safe.sh
. "$HERE/safe.sh"

say() { echo "[alertmanager] $*" >&2; }

STATE="$(run_state_dir opsguard-alertmanager "${OPSGUARD_ALERTMANAGER_STATE_DIR:-}")"
PIDFILE="$STATE/alertmanager.pid"
URLFILE="$STATE/alertmanager.url"
RUNFILE="$STATE/alertmanager.run"
TIMEOUT="${OPSGUARD_ALERTMANAGER_START_TIMEOUT:-60}"

# 0 if PID is a running (non-zombie) alertmanager
ours() {
    local pid="$1" state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [ "$state" != "Z" ] && [ "$state" != "X" ] && grep -qa alertmanager "/proc/$pid/cmdline" 2>/dev/null
}

ready() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1/-/ready" 2>/dev/null || true)" = "200" ]; }

binary() {
    local b
    for b in prometheus-alertmanager alertmanager; do
        if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    if [ -f "$PIDFILE" ] && ours "$(cat "$PIDFILE")" && [ -f "$URLFILE" ] && ready "$(cat "$URLFILE")"; then
        say "already running (pid $(cat "$PIDFILE"))"
        cat "$URLFILE"
        return 0
    fi
    stop >/dev/null 2>&1 || true
    local bin
    if ! bin="$(binary)"; then
        say "installing Debian's prometheus-alertmanager"
        # Installed as a package only: no service of its own is wanted here.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-alertmanager >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-alertmanager >&2; }
        bin="$(binary)" || { say "prometheus-alertmanager is not installed"; exit 1; }
    fi
    private_dir "$STATE"
    local run port url pid start
    run="$(mktemp -d -p "$STATE" run.XXXXXX)"
    echo "$run" >"$RUNFILE"
    mkdir -p "$run/data"
    cat >"$run/alertmanager.yml" <<'YAML'
# Every alert goes to a receiver that sends nothing: the tests read the
# alerts back through the API.
route:
  receiver: discard
  group_wait: 1s
receivers:
  - name: discard
YAML
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    say "starting $("$bin" --version 2>&1 | head -n 1) on $url"
    nohup "$bin" \
        --config.file="$run/alertmanager.yml" \
        --storage.path="$run/data" \
        --web.listen-address="127.0.0.1:$port" \
        --cluster.listen-address= \
        >"$run/alertmanager.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
    echo "$url" >"$URLFILE"
    start=$(date +%s)
    until ready "$url"; do
        if ! ours "$pid"; then
            say "alertmanager exited during startup; its log:"
            tail -n 20 "$run/alertmanager.log" >&2 || true
            stop >/dev/null 2>&1 || true
            exit 1
        fi
        if [ $(( $(date +%s) - start )) -ge "$TIMEOUT" ]; then
            say "not ready after ${TIMEOUT}s; stopping it"
            tail -n 20 "$run/alertmanager.log" >&2 || true
            stop >/dev/null 2>&1 || true
            exit 1
        fi
        sleep 0.2
    done
    say "ready (pid $pid)"
    echo "$url"
}

stop() {
    local pid run
    if [ -f "$PIDFILE" ]; then
        pid="$(cat "$PIDFILE" 2>/dev/null || true)"
        # Only our own server, never a recycled pid.
        if ours "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                ours "$pid" || break
                sleep 0.1
            done
            if ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
            say "stopped (pid $pid)"
        fi
        rm -f "$PIDFILE"
    fi
    if [ -f "$RUNFILE" ]; then
        run="$(cat "$RUNFILE")"
        safe_rm_rf "$STATE" "$run"
        rm -f "$RUNFILE"
    fi
    rm -f "$URLFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
