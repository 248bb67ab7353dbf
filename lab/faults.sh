#!/bin/bash
# OpsGuard lab fault recipes, executable form of lab/FAULTS.md.
#
#   lab/faults.sh inject FAULT     inject one fault into the running lab
#   lab/faults.sh verify [FAULT..] inject each fault, check that it really
#                                  happens (status, exit code, OOMKilled, log
#                                  lines, disk usage), check the remedy, repair
#                                  the lab, print timings (default: all)
#   lab/faults.sh df db|web        disk usage (df -P) of a container's lab disk,
#                                  running or stopped (helper container)
#   lab/faults.sh clean db|web     truncate the *.log files of that disk
#
# FAULTS: web-disk-fill zombies db-garbage-flood db-config-corruption
#         db-oom-kill db-data-corruption chain-reaction
# (and web-log-slow-fill, inject only: stopped by touching
#  /run/opsguard-slow-fill.stop in web-prod)
#
# Everything here goes through the docker CLI only (exec, run --volumes-from,
# stop/start/restart, inspect, logs), i.e. through calls the Rust chaos engine
# can make with bollard.
# shellcheck disable=SC2016,SC2015  # single quotes run in the container; ok() never fails
set -euo pipefail
. "$(dirname "$0")/lib.sh"

IMG=$OPSGUARD_LAB_IMAGE
ALL_FAULTS="web-disk-fill zombies db-garbage-flood db-config-corruption db-oom-kill db-data-corruption chain-reaction"

# ---- building blocks --------------------------------------------------------

# Short-lived helper: same mounts as CONTAINER (running or not), lab image.
helper() {
    local c=$1; shift
    docker run --rm --label "$LAB_LABEL" --label opsguard.role=helper --label opsguard.prune=true --volumes-from "$c" "$IMG" "$@"
}
log_dir() { case $1 in web-prod) echo /var/log/nginx ;; db-prod) echo /var/log ;; *) die "no lab disk for $1" ;; esac; }
container_of() { case $1 in web|web-prod) echo web-prod ;; db|db-prod) echo db-prod ;; *) die "web or db, not $1" ;; esac; }

# disk_pct CONTAINER -> Capacity column of df -P (integer percent)
disk_pct() {
    local c=$1 d; d=$(log_dir "$c")
    if [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ]; then
        docker exec "$c" df -P "$d"
    else
        helper "$c" df -P "$d"
    fi | awk 'NR==2 {sub("%","",$5); print $5}'
}
clean_logs() { # truncate *.log under the container's log dir (exec or helper)
    local c=$1 d; d=$(log_dir "$c")
    local cmd=(find "$d" -type f -name '*.log' -exec truncate -s 0 {} +)
    if [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ]; then docker exec "$c" "${cmd[@]}"; else helper "$c" "${cmd[@]}"; fi
}
# Fill the filesystem holding FILE to 100% (1 MiB writes, then 1 KiB writes
# for the last partial MiB). dd ends with ENOSPC; that is the point.
FILL_SH='f=$1; dd if=/dev/zero of="$f" bs=1M oflag=append conv=notrunc status=none 2>/dev/null; dd if=/dev/zero of="$f" bs=1k oflag=append conv=notrunc status=none 2>/dev/null; sync; true'
fill_exec()   { docker exec "$1" sh -c "$FILL_SH" fill "$2"; }
fill_helper() { helper "$1" sh -c "$FILL_SH" fill "$2"; }
# Generate WAL until a new WAL segment is needed: on a full disk the backend
# PANICs writing pg_wal/xlogtemp.N and the postmaster (restart_after_crash=off)
# shuts down, exit 1.
WAL_SH='for i in $(seq 1 100); do psql -U postgres -qAt -c "SELECT txid_current()" -c "SELECT pg_switch_wal()" >/dev/null 2>&1 || exit 0; done; echo "no PANIC after 100 WAL switches" >&2'
drive_wal() { docker exec db-prod bash -c "$WAL_SH" || true; }

state() { docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}' "$1"; }
wait_exited() { # CONTAINER TIMEOUT_S
    local end=$(( $(date +%s) + $2 ))
    while [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ]; do
        [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.2
    done
}
wait_db_ready() { # TIMEOUT_S: running and accepting connections
    local end=$(( $(date +%s) + $1 ))
    until [ "$(docker inspect -f '{{.State.Running}}' db-prod)" = true ] && docker exec db-prod pg_isready -q -h 127.0.0.1 -U postgres 2>/dev/null; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        [ "$(docker inspect -f '{{.State.Running}}' db-prod)" = true ] || return 1
        sleep 0.2
    done
}
ms() { date +%s%3N; }

# ---- injections (what the Rust chaos engine reproduces) -----------------------

inject_web-disk-fill() {
    # Spec: dd a 2 GB garbage log; the 56 MB disk fills at 100% (dd: ENOSPC).
    docker exec web-prod sh -c 'dd if=/dev/zero of=/var/log/nginx/chaos_garbage.log bs=1M count=2048 status=none 2>/dev/null; true'
}
inject_web-log-slow-fill() {
    # Issue #12: 256 KiB a second into a log (about 0.45 % of the disk),
    # detached, at most 240 times, until /run/opsguard-slow-fill.stop exists.
    docker exec web-prod sh -c 'rm -f "$2"; (i=0; while [ $i -lt 240 ] && [ ! -e "$2" ]; do dd if=/dev/zero of="$1" bs=256k count=1 oflag=append conv=notrunc status=none 2>/dev/null; sleep 1; i=$((i+1)); done) </dev/null >/dev/null 2>&1 &' \
        fill /var/log/nginx/chaos_slow_fill.log /run/opsguard-slow-fill.stop
}
inject_zombies() {
    local i
    for i in $(seq 1 "${ZOMBIES:-15}"); do
        docker rm -f "opsguard-zombie-$i" >/dev/null 2>&1 || true
        docker run -d --name "opsguard-zombie-$i" --label "$LAB_LABEL" --label opsguard.role=zombie --label opsguard.prune=true "$IMG" true >/dev/null
    done
    # `run -d` returns while `true` may still be running: wait for all to exit.
    # shellcheck disable=SC2046
    docker wait $(docker ps -aq --filter label=opsguard.role=zombie) >/dev/null
}
inject_db-garbage-flood() {
    fill_exec db-prod /root/garbage.bin
    drive_wal
}
inject_db-config-corruption() {
    docker exec db-prod sh -c 'echo "shared_buffers = = 16MB  # opsguard-chaos" >>"$PGDATA/postgresql.conf"'
    docker restart db-prod >/dev/null
}
inject_db-oom-kill() {
    docker exec db-prod tail /dev/zero || true     # exec exits 137 too
}
inject_db-data-corruption() {
    docker stop db-prod >/dev/null
    helper db-prod sh -c 'cp -p "$PGDATA/global/pg_control" /root/pg_control.opsguard-backup; printf OPSGUARD-CHAOS | dd of="$PGDATA/global/pg_control" bs=1 seek=16 conv=notrunc status=none'
    docker start db-prod >/dev/null
}
inject_chain-reaction() {
    fill_exec db-prod /var/log/postgres_crash.log
    docker stop db-prod >/dev/null
    # The shutdown freed a few blocks (postmaster.pid...): take them too so a
    # start before cleaning fails.
    fill_helper db-prod /var/log/postgres_crash.log
}

# ---- verification -------------------------------------------------------------

FAILS=0
RESULTS=()
ok() { printf '    ok   %s\n' "$*" >&2; }
bad() { FAILS=$((FAILS+1)); printf '    FAIL %s\n' "$*" >&2; }
expect_eq() { if [ "$2" = "$3" ]; then ok "$1: $2"; else bad "$1: got '$2', want '$3'"; fi; }
expect_ge() { if [ "$2" -ge "$3" ]; then ok "$1: $2 >= $3"; else bad "$1: got $2, want >= $3"; fi; }
expect_lt() { if [ "$2" -lt "$3" ]; then ok "$1: $2 < $3"; else bad "$1: got $2, want < $3"; fi; }
expect_log() { # CONTAINER SINCE PATTERN
    # Retried for up to 5 s: right after a container exits, its last lines can
    # still be missing from `docker logs` (seen once on this engine).
    local line t0 waited
    t0=$(ms)
    for _ in $(seq 1 25); do
        if line=$(docker logs --since "$2" "$1" 2>&1 | grep -E -m1 -- "$3"); then
            waited=$(( $(ms) - t0 ))
            [ "$waited" -gt 500 ] && log "NOTE: log line appeared ${waited} ms after the first look"
            ok "log: $line"; return
        fi
        sleep 0.2
    done
    bad "log of $1 since $2 lacks /$3/"
}
note() { RESULTS+=("$(printf '%-22s %s' "$1" "$2")"); }

ensure_healthy() {
    if ! mountpoint -q "$LAB_DIR/$DB_DISK" || ! wait_db_ready 1 \
        || [ "$(docker inspect -f '{{.State.Running}}' web-prod 2>/dev/null)" != true ]; then
        log "lab not healthy: reset"; "$LAB_SRC/reset.sh" >/dev/null
    fi
    docker exec db-prod psql -U postgres -qAt -c "CREATE TABLE IF NOT EXISTS orders(id int primary key, note text)" \
        -c "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1,10000) g ON CONFLICT DO NOTHING" >/dev/null
}
rows() { docker exec db-prod psql -U postgres -qAt -c "SELECT count(*) FROM orders"; }

verify_web-disk-fill() {
    local t0 t1 p
    t0=$(ms); inject_web-disk-fill; t1=$(ms)
    p=$(disk_pct web-prod); expect_ge "web disk after fill (%)" "$p" 86
    expect_eq "web-prod still serves" "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/)" 200
    expect_eq "web-prod state" "$(state web-prod)" "running exit=0 oom=false"
    clean_logs web-prod
    p=$(disk_pct web-prod); expect_lt "web disk after truncate *.log (%)" "$p" 80
    note web-disk-fill "fill $((t1-t0)) ms"
}
verify_zombies() {
    local t0 t1 n
    t0=$(ms); inject_zombies; t1=$(ms)
    n=$(docker ps -aq --filter "label=$LAB_LABEL" --filter label=opsguard.role=zombie --filter status=exited | wc -l)
    expect_eq "exited zombies" "$n" "${ZOMBIES:-15}"
    local t2 t3
    t2=$(ms)
    # shellcheck disable=SC2046
    docker rm $(docker ps -aq --filter "label=$LAB_LABEL" --filter label=opsguard.role=zombie --filter status=exited) >/dev/null
    t3=$(ms)
    note zombies "create $((t1-t0)) ms, remove (list+rm) $((t3-t2)) ms"
}
verify_db-garbage-flood() {
    local since t0 t1 p
    since=$(date +%s); t0=$(ms); inject_db-garbage-flood; wait_exited db-prod 30 || bad "db-prod still running"; t1=$(ms)
    expect_eq "db-prod state" "$(state db-prod)" "exited exit=1 oom=false"
    expect_log db-prod "$since" 'PANIC: .*No space left on device'
    expect_log db-prod "$since" 'shutting down because restart_after_crash is off'
    clean_logs db-prod
    p=$(disk_pct db-prod); expect_ge "db disk after truncating logs (%)" "$p" 95
    since=$(date +%s); docker start db-prod >/dev/null; wait_exited db-prod 30 || bad "start succeeded?!"
    expect_eq "db-prod after start with disk full" "$(state db-prod)" "exited exit=1 oom=false"
    expect_log db-prod "$since" 'FATAL: .*No space left on device'
    expect_log db-prod "$since" 'shutting down due to startup process failure'
    # lab repair (not an agent action): remove the garbage
    helper db-prod rm -f /root/garbage.bin
    docker start db-prod >/dev/null; wait_db_ready 30 && ok "repaired" || bad "db did not come back"
    note db-garbage-flood "fill + WAL -> exited in $((t1-t0)) ms"
}
verify_db-config-corruption() {
    local since t0 t1
    since=$(date +%s); t0=$(ms); inject_db-config-corruption; wait_exited db-prod 30 || bad "db-prod still running"; t1=$(ms)
    expect_eq "db-prod state" "$(state db-prod)" "exited exit=1 oom=false"
    expect_log db-prod "$since" 'LOG: +syntax error in file "/var/lib/postgresql/data/postgresql.conf" line [0-9]+, near token "="'
    expect_log db-prod "$since" 'FATAL: +configuration file "/var/lib/postgresql/data/postgresql.conf" contains errors'
    helper db-prod sed -i '/opsguard-chaos/d' /var/lib/postgresql/data/postgresql.conf
    docker start db-prod >/dev/null; wait_db_ready 30 && ok "repaired" || bad "db did not come back"
    note db-config-corruption "append + restart -> exited in $((t1-t0)) ms"
}
verify_db-oom-kill() {
    local since t0 t1 before
    before=$(rows)
    since=$(date +%s); t0=$(ms); inject_db-oom-kill; wait_exited db-prod 30 || bad "db-prod still running"; t1=$(ms)
    expect_eq "db-prod state" "$(state db-prod)" "exited exit=137 oom=true"
    local ev; ev=$(docker events --since "$since" --until "$(( $(date +%s) + 1 ))" --filter container=db-prod --filter event=oom --filter event=die --format '{{.Action}}' | tr '\n' ' ')
    # one or two 'oom' events (the hog can trip the limit again while the
    # container is torn down), always before 'die'
    if [[ $ev =~ ^(oom )+die\ $ ]]; then ok "events: $ev"; else bad "events: got '$ev', want 'oom [oom] die'"; fi
    docker start db-prod >/dev/null; wait_db_ready 30 && ok "restart brings it back" || bad "db did not come back"
    expect_eq "rows after restart" "$(rows)" "$before"
    note db-oom-kill "tail /dev/zero -> exited in $((t1-t0)) ms"
}
verify_db-data-corruption() {
    local since t0 t1
    since=$(date +%s); t0=$(ms); inject_db-data-corruption; wait_exited db-prod 30 || bad "db-prod still running"; t1=$(ms)
    expect_eq "db-prod state" "$(state db-prod)" "exited exit=1 oom=false"
    expect_log db-prod "$since" 'FATAL: +incorrect checksum in control file'
    helper db-prod sh -c 'cp -p /root/pg_control.opsguard-backup "$PGDATA/global/pg_control" && rm /root/pg_control.opsguard-backup'
    docker start db-prod >/dev/null; wait_db_ready 30 && ok "repaired" || bad "db did not come back"
    note db-data-corruption "stop + overwrite + start -> exited in $((t1-t0)) ms"
}
verify_chain-reaction() {
    local since t0 t1 t2 t3 p before
    before=$(rows)
    since=$(date +%s); t0=$(ms); inject_chain-reaction; t1=$(ms)
    # With 0 blocks free the shutdown checkpoint PANICs (exit 1); with a few
    # KB free it shuts down cleanly (exit 0) but still logs
    # 'could not write temporary statistics file "pg_stat/pgstat.tmp": No space left on device'.
    expect_eq "db-prod after stop" "$(state db-prod)" "exited exit=1 oom=false"
    expect_log db-prod "$since" 'PANIC: +could not write to file "pg_logical/replorigin_checkpoint.tmp": No space left on device'
    expect_log db-prod "$since" 'abnormal database system shutdown'
    p=$(disk_pct db-prod); expect_eq "db disk (%)" "$p" 100
    since=$(date +%s); docker start db-prod >/dev/null; wait_exited db-prod 30 || bad "start before cleaning succeeded"
    expect_eq "start before cleaning" "$(state db-prod)" "exited exit=1 oom=false"
    expect_log db-prod "$since" 'FATAL: +could not write lock file "postmaster.pid": No space left on device'
    t2=$(ms); clean_logs db-prod
    p=$(disk_pct db-prod); expect_lt "db disk after truncate *.log (%)" "$p" 80
    docker start db-prod >/dev/null; wait_db_ready 30 && ok "start after cleaning" || bad "db did not come back"; t3=$(ms)
    expect_eq "rows after recovery" "$(rows)" "$before"
    note chain-reaction "fill+stop+top-up $((t1-t0)) ms, clean+start+ready $((t3-t2)) ms"
}

verify() {
    local f faults=("$@")
    [ ${#faults[@]} -gt 0 ] || read -r -a faults <<<"$ALL_FAULTS"
    for f in "${faults[@]}"; do
        declare -F "verify_$f" >/dev/null || die "unknown fault $f"
        ensure_healthy
        log "verify $f"
        "verify_$f"
    done
    printf '%s\n' "${RESULTS[@]}"
    if [ "$FAILS" -gt 0 ]; then die "$FAILS check(s) failed"; fi
    echo "all faults verified"
}

case ${1:-} in
    inject) declare -F "inject_${2:-}" >/dev/null || die "unknown fault '${2:-}' (one of: $ALL_FAULTS)"; "inject_$2" ;;
    verify) shift; verify "$@" ;;
    df) c=$(container_of "${2:-}"); disk_pct "$c" ;;
    clean) c=$(container_of "${2:-}"); clean_logs "$c"; disk_pct "$c" ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
