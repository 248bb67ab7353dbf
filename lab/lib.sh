# Shared settings for the OpsGuard lab scripts (sourced, not executed).
# shellcheck shell=bash disable=SC2034

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LAB_SRC/.." && pwd)

# Host paths. The compose file uses the same default for OPSGUARD_LAB_DIR.
LAB_DIR_DEFAULT=/var/lib/opsguard-lab
LAB_DIR=${OPSGUARD_LAB_DIR:-$LAB_DIR_DEFAULT}
# up.sh leaves this file in LAB_DIR; down.sh deletes only a marked LAB_DIR.
LAB_DIR_MARKER=.opsguard-lab-dir
LAB_CACHE=${OPSGUARD_LAB_CACHE:-/var/cache/opsguard-lab}
export OPSGUARD_LAB_DIR=$LAB_DIR

# Size-limited disks: NAME:SIZE_MB. Mounted at $LAB_DIR/NAME, backed by
# $LAB_DIR/images/NAME.img (loop-mounted ext4, no reserved blocks).
WEB_DISK=web-logs
DB_DISK=db-disk
# The second stack's database (shop-db, compose profile "shop").
SHOP_DB_DISK=shop-db-disk
WEB_DISK_MB=${OPSGUARD_WEB_DISK_MB:-64}
DB_DISK_MB=${OPSGUARD_DB_DISK_MB:-96}
SHOP_DB_DISK_MB=${OPSGUARD_SHOP_DB_DISK_MB:-96}

IMAGE_REPO=opsguard-lab
export OPSGUARD_LAB_IMAGE=${OPSGUARD_LAB_IMAGE:-$IMAGE_REPO:latest}

export COMPOSE_PROJECT_NAME=opsguard
export COMPOSE_FILE=$REPO_ROOT/docker-compose.yml
LAB_LABEL=opsguard.lab=true

log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (mounts, debootstrap)"; }

# safe_rm_rf and private_dir: the guarded forms of rm -rf and of a
# directory for run state (scripts/safe.sh).
. "$REPO_ROOT/scripts/safe.sh"

# debootstrap for the images (lab/build-images.sh, deploy/build-image.sh):
# the Debian mirror apt already uses (OPSGUARD_LAB_MIRROR overrides it),
# debootstrap installed if missing, and a rootfs removed with whatever
# debootstrap left mounted below it.
debian_mirror() {
    if [ -n "${OPSGUARD_LAB_MIRROR:-}" ]; then echo "$OPSGUARD_LAB_MIRROR"; return; fi
    local m
    m=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -v security | head -n1 | tr -d ' ' || true)
    echo "${m:-http://deb.debian.org/debian}"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q debootstrap >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }
}

# remove_rootfs DIR: DIR must be below $LAB_CACHE (safe_rm_rf checks).
remove_rootfs() {
    local root=$1 m
    [ -e "$root" ] || return 0
    for m in $(findmnt -rn -o TARGET | grep -F "$root" | sort -r); do umount -l "$m" || true; done
    safe_rm_rf "$LAB_CACHE" "$root"
}

# compose v1 (docker-compose) preferred; fall back to the v2 plugin.
compose() {
    if command -v docker-compose >/dev/null 2>&1; then
        docker-compose -p "$COMPOSE_PROJECT_NAME" -f "$COMPOSE_FILE" "$@"
    else
        docker compose -p "$COMPOSE_PROJECT_NAME" -f "$COMPOSE_FILE" "$@"
    fi
}

# Serialise up/down between concurrent callers (e.g. parallel test binaries).
lab_lock() {
    exec 8>"${OPSGUARD_LAB_LOCK:-/run/opsguard-lab.lock}"
    flock 8
}
