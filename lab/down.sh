#!/bin/bash
# Take the OpsGuard lab down (idempotent): compose down, remove every
# container labelled opsguard.lab=true (zombies and helpers included),
# unmount and delete the lab disks. The built image stays cached.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
lab_lock

compose down --remove-orphans -t 10 2>&1 | sed 's/^/    /' >&2 || true
ids=$(docker ps -aq --filter "label=$LAB_LABEL")
if [ -n "$ids" ]; then
    log "removing $(echo "$ids" | wc -l) labelled container(s)"
    # shellcheck disable=SC2086
    docker rm -f -v $ids >/dev/null
fi

for d in "$WEB_DISK" "$DB_DISK" "$SHOP_DB_DISK"; do
    mp=$LAB_DIR/$d
    if mountpoint -q "$mp"; then
        umount "$mp" 2>/dev/null || { sleep 1; umount "$mp" 2>/dev/null; } || umount -l "$mp"
    fi
done
# Detach loop devices still bound to our images (mount -o loop normally
# auto-clears them).
if [ -d "$LAB_DIR/images" ]; then
    for img in "$LAB_DIR"/images/*.img; do
        [ -e "$img" ] || continue
        losetup -j "$img" -O NAME -n 2>/dev/null | while read -r dev; do losetup -d "$dev" || true; done
    done
fi
# Only a directory that is the lab's: the default one, or one that up.sh
# marked (OPSGUARD_LAB_DIR may point anywhere).
if [ -d "$LAB_DIR" ] && ! findmnt -rn -o TARGET | grep -qF "$LAB_DIR/"; then
    if [ "$LAB_DIR" = "$LAB_DIR_DEFAULT" ] || [ -f "$LAB_DIR/$LAB_DIR_MARKER" ]; then
        safe_rm_rf "$(dirname "$LAB_DIR")" "$LAB_DIR"
    else
        log "not removing $LAB_DIR: no $LAB_DIR_MARKER in it (not made by lab/up.sh)"
    fi
fi
log "lab is down (image kept: $(docker images -q "$OPSGUARD_LAB_IMAGE" 2>/dev/null | head -n1))"
