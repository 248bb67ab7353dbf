#!/bin/bash
# Bring the OpsGuard lab up (idempotent):
#   1. build/import the lab image if its recipe tag is missing (build-images.sh);
#   2. create and mount the size-limited disks if they are not mounted
#      (shop-db's too, for lab/shop.sh);
#   3. docker-compose -p opsguard up -d (web-prod, db-prod);
#   4. wait until db-prod accepts connections and web-prod answers on
#      127.0.0.1:8080, then print a summary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
lab_lock
T0=$(date +%s)

"$LAB_SRC/build-images.sh" >/dev/null

# mount_disk NAME SIZE_MB: loop-mounted ext4 (no reserved blocks) at
# $LAB_DIR/NAME backed by $LAB_DIR/images/NAME.img; tmpfs if loop devices
# are unavailable (OPSGUARD_LAB_FS=tmpfs forces it). Prints 1 if it mounted.
mount_disk() {
    local name=$1 mb=$2 mp=$LAB_DIR/$1 img=$LAB_DIR/images/$1.img
    if mountpoint -q "$mp"; then echo 0; return; fi
    mkdir -p "$mp" "$LAB_DIR/images"
    if [ "${OPSGUARD_LAB_FS:-ext4}" != tmpfs ]; then
        if [ ! -s "$img" ]; then
            truncate -s "${mb}M" "$img"
            mkfs.ext4 -q -F -m 0 -L "og-$name" "$img" >/dev/null
        fi
        if mount -o loop "$img" "$mp" 2>/dev/null; then echo 1; return; fi
        log "WARNING: loop mount of $img failed; falling back to tmpfs for $name (tmpfs pages are charged to the writing container's memory cgroup: see lab/FAULTS.md)"
        rm -f "$img"
    fi
    mount -t tmpfs -o "size=${mb}m,mode=0755" "og-$name" "$mp"
    echo 1
}

mkdir -p "$LAB_DIR"
touch "$LAB_DIR/$LAB_DIR_MARKER"
mounted=0
[ "$(mount_disk "$WEB_DISK" "$WEB_DISK_MB")" = 1 ] && mounted=1
[ "$(mount_disk "$DB_DISK" "$DB_DISK_MB")" = 1 ] && mounted=1
[ "$(mount_disk "$SHOP_DB_DISK" "$SHOP_DB_DISK_MB")" = 1 ] && mounted=1
mkdir -p "$LAB_DIR/$WEB_DISK/nginx" "$LAB_DIR/$DB_DISK"/{data,log,root} "$LAB_DIR/$SHOP_DB_DISK"/{data,log,root}

if [ "$mounted" = 1 ]; then
    # Containers created before these mounts would still see the old
    # directories: recreate them.
    compose rm -f -s -v >/dev/null 2>&1 || true
fi

log "docker-compose up -d"
compose up -d --remove-orphans 2>&1 | sed 's/^/    /' >&2

wait_for() { # SECONDS DESCRIPTION CMD...
    local secs=$1 what=$2; shift 2
    local end=$(( $(date +%s) + secs ))
    local rc
    while :; do
        rc=0; "$@" >/dev/null || rc=$?
        [ "$rc" = 0 ] && return 0
        [ "$rc" = 99 ] && return 1   # hopeless (db-prod exited)
        if [ "$(date +%s)" -ge "$end" ]; then
            log "timeout waiting for $what"; return 1
        fi
        sleep 0.5
    done
}
web_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fs -m 2 -o /dev/null http://127.0.0.1:8080/
    else
        exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -n1 <&3 | grep -q ' 200 '
    fi
}
db_ok() {
    if [ "$(docker inspect -f '{{.State.Status}}' db-prod 2>/dev/null)" = exited ]; then
        log "db-prod exited ($(docker inspect -f 'exit code {{.State.ExitCode}}' db-prod)); a leftover fault? lab/reset.sh gives a fresh lab"
        return 99
    fi
    docker exec db-prod pg_isready -q -h 127.0.0.1 -U postgres 2>/dev/null || return 1
}

ok=1
wait_for 120 "db-prod to accept connections" db_ok || ok=0
wait_for 60 "web-prod on 127.0.0.1:8080" web_ok || ok=0
if [ "$ok" != 1 ]; then
    docker ps -a --filter label="$LAB_LABEL" >&2
    docker logs --tail 30 db-prod >&2 || true
    die "lab did not become healthy"
fi

echo "OpsGuard lab is up ($(( $(date +%s) - T0 ))s)"
echo "  image:      $(docker inspect -f '{{.Config.Image}}' db-prod) = $(docker image inspect -f '{{index .Config.Labels "opsguard.lab.recipe"}}' "$OPSGUARD_LAB_IMAGE" | sed "s/^/$IMAGE_REPO:/")"
docker ps -a --filter label="$LAB_LABEL" --format '  {{.Names}}\t{{.Status}}\t{{.Ports}}' | sort
echo "  disks:"
df -P "$LAB_DIR/$WEB_DISK" "$LAB_DIR/$DB_DISK" "$LAB_DIR/$SHOP_DB_DISK" | awk 'NR>1 {printf "    %-40s %6d KB  %s used\n", $6, $2, $5}'
echo "  web:        http://127.0.0.1:8080/   logs $LAB_DIR/$WEB_DISK/nginx -> web-prod:/var/log/nginx"
echo "  db:         docker exec db-prod psql -U postgres   data $LAB_DIR/$DB_DISK/{data,log,root}"
