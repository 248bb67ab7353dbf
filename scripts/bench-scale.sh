#!/usr/bin/env bash
# Issue #10's scale benchmark: `opsguard watch` (release build) on a host
# with N labelled stateless containers beside the lab (default 200).
#
#   1. idle: CPU time and resident memory of the watch over IDLE_SECS
#      (default 60) with every container running and nothing to do;
#   2. burst: all N killed at once (one `docker kill`, SIGKILL, exit 137,
#      restart policy `no`): how many OpsGuard restarted (each must be, once:
#      none lost) and the time from the kill to the last restart, read from
#      the audit log's records; and, right after the kill, db-prod
#      OOM-killed (`opsguard chaos db-oom-kill`): the time from its death to
#      its DB_CRASH alarm while the burst is being healed (the watch refuses
#      the restart; `opsguard chaos reset` puts the lab back afterwards).
#
# A benchmark, not a test: it prints figures (and writes them as JSON to
# $OUT, default target/bench-scale.json) and fails only when it could not
# measure, or when a container was not restarted. Needs root, Docker and
# the lab (lab/up.sh: the image and the specification's two services).
#
#   sudo bash scripts/bench-scale.sh            # N=200 IDLE_SECS=60
#   sudo N=50 IDLE_SECS=20 bash scripts/bench-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. lab/lib.sh
need_root

N=${N:-200}
IDLE_SECS=${IDLE_SECS:-60}
OUT=${OUT:-target/bench-scale.json}
PREFIX=og-scale
SCALE_LABEL=opsguard.bench=scale
say() { echo "[bench-scale] $*" >&2; }

docker image inspect "$OPSGUARD_LAB_IMAGE" >/dev/null 2>&1 || die "no $OPSGUARD_LAB_IMAGE: run lab/up.sh first"
for c in web-prod db-prod; do
    [ "$(docker inspect -f '{{.State.Status}}' "$c" 2>/dev/null || true)" = running ] || die "$c is not running: run lab/up.sh"
done

WORK=$(mktemp -d)
WATCH_PID=
cleanup() {
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null || true
    docker ps -aq --filter "label=$SCALE_LABEL" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    [ -n "${DB_KILLED:-}" ] && "$BIN" chaos reset >/dev/null 2>&1 || true
    rm -rf --one-file-system -- "${WORK:?}"
}
trap cleanup EXIT

say "cargo build --release --bin opsguard"
cargo build --release --locked --bin opsguard >&2
BIN=${CARGO_TARGET_DIR:-target}/release/opsguard

say "creating $N labelled stateless containers"
docker ps -aq --filter "label=$SCALE_LABEL" | xargs -r docker rm -f -v >/dev/null
t0=$(date +%s)
for i in $(seq 1 "$N"); do
    docker run -d --name "$PREFIX-$i" --restart no --network none \
        --label "$LAB_LABEL" --label opsguard.enable=true --label opsguard.role=stateless \
        --label "$SCALE_LABEL" "$OPSGUARD_LAB_IMAGE" sleep infinity >/dev/null
done
say "created in $(( $(date +%s) - t0 )) s"

METRICS=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AUDIT=$WORK/audit.jsonl
env -u OPSGUARD_NOTIFY "$BIN" watch --approve deny --audit "$AUDIT" --log-format json \
    --metrics-listen "$METRICS" >"$WORK/watch.log" 2>&1 &
WATCH_PID=$!
for _ in $(seq 1 120); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$METRICS/readyz" || true)" = 200 ] && break
    sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$METRICS/readyz" || true)" = 200 ] || {
    tail -20 "$WORK/watch.log" >&2; die "the watch did not become ready"; }
# Let the first sweep and the event stream settle before measuring.
sleep 5

ticks() { awk '{print $14 + $15}' "/proc/$WATCH_PID/stat"; }
HZ=$(getconf CLK_TCK)
say "idle for $IDLE_SECS s with $N containers watched"
c0=$(ticks); s0=$(date +%s.%N)
sleep "$IDLE_SECS"
c1=$(ticks); s1=$(date +%s.%N)
RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$WATCH_PID/status")
HWM_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$WATCH_PID/status")
CPU_PCT=$(python3 -c "print(round(100 * ($c1 - $c0) / $HZ / ($s1 - $s0), 3))")
say "idle: CPU ${CPU_PCT}% of a core, resident ${RSS_KB} kB (peak ${HWM_KB} kB)"

say "burst: killing all $N at once"
KILL_AT_MS=$(date +%s%3N)
docker ps -q --filter "label=$SCALE_LABEL" | xargs docker kill >/dev/null
KILLED_MS=$(date +%s%3N)
DB_KILLED=1
"$BIN" chaos db-oom-kill >/dev/null 2>&1 || die "db-oom-kill did not take"
deadline=$(( $(date +%s) + 600 ))
# The audit log's stateless restarts of the bench's containers:
# "COUNT LAST_TS_MS" (distinct containers, the latest record's time).
restarts() {
    python3 - "$AUDIT" "$PREFIX" <<'PY'
import json, sys
seen, last = set(), 0
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("event") == "stateless" and str(r.get("container", "")).startswith(sys.argv[2] + "-") \
            and (r.get("step") or {}).get("status") == "restarted":
        seen.add(r["container"])
        last = max(last, r["ts"])
print(len(seen), last)
PY
}
restarted=0
while :; do
    read -r restarted LAST_MS < <(restarts)
    [ "$restarted" -ge "$N" ] && break
    [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 1
done
# db-prod's alarm: its incident's opening, after the death it records.
DB_ALARM_S=$(python3 - "$AUDIT" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    a = r.get("alarm") or {}
    if r.get("event") == "incident_opened" and a.get("container") == "db-prod":
        fault = (a.get("evidence") or {}).get("fault_at")
        print(round((r["ts"] - fault) / 1000, 2) if fault else "null")
        break
else:
    print("null")
PY
)
BURST_HWM_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$WATCH_PID/status")
TO_LAST_S=$(python3 -c "print(round(($LAST_MS - $KILL_AT_MS) / 1000, 2))")
say "burst: $restarted of $N restarted; kill issued over $(( KILLED_MS - KILL_AT_MS )) ms; last restart ${TO_LAST_S} s after the kill; peak resident ${BURST_HWM_KB} kB"
say "db-prod OOM-killed during the burst: DB_CRASH ${DB_ALARM_S} s after its death"

mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<EOF
{"containers": $N, "idle_secs": $IDLE_SECS, "idle_cpu_pct_of_a_core": $CPU_PCT, "idle_rss_kb": $RSS_KB,
 "idle_peak_rss_kb": $HWM_KB, "burst_restarted": $restarted, "burst_kill_ms": $(( KILLED_MS - KILL_AT_MS )),
 "burst_to_last_restart_s": $TO_LAST_S, "burst_peak_rss_kb": $BURST_HWM_KB, "db_alarm_during_burst_s": $DB_ALARM_S}
EOF
cat "$OUT"
[ "$restarted" -ge "$N" ] || die "only $restarted of $N containers were restarted"
