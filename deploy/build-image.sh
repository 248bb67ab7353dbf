#!/bin/bash
# Build OpsGuard's own container image without any container registry:
#   cargo build --release --bin opsguard
#   debootstrap --variant=minbase bookworm -> base tarball (cached)
#   base tarball + /usr/local/bin/opsguard -> docker import
#   => opsguard:<hash> and opsguard:latest
#
# The image holds the agent and nothing else it would run: a minimal Debian
# (for the C library the binary links against, and a shell to look around
# in) and the one binary. It runs `opsguard watch`; docker-compose.yml's
# `opsguard` service (profile `agent`) and README "Run it as a service" say
# how it is started.
#
# Cached: the base tarball is keyed by this script's base recipe, so only
# the binary changes between builds; the tag is a hash of the base and the
# binary, and nothing is imported when that tag exists.
#
# Env: OPSGUARD_LAB_MIRROR, OPSGUARD_LAB_CACHE (shared with the lab image,
#      default /var/cache/opsguard-lab), CARGO_TARGET_DIR (where cargo puts
#      the binary), OPSGUARD_BINARY (use this binary instead of building),
#      FORCE=1 to rebuild the base.
set -euo pipefail
. "$(dirname "$0")/../lab/lib.sh"

SUITE=bookworm
IMAGE_NAME=opsguard

need_root

BINARY=${OPSGUARD_BINARY:-}
if [ -z "$BINARY" ]; then
    log "cargo build --release --bin opsguard"
    (cd "$REPO_ROOT" && cargo build --release --locked --bin opsguard >&2)
    BINARY=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/opsguard
fi
[ -x "$BINARY" ] || die "no opsguard binary at $BINARY"

base_hash() { { sed -n '/^# --- base recipe/,/^# --- end of base recipe/p' "$0"; echo "$SUITE"; } | sha256sum | cut -c1-12; }
BASE_HASH=$(base_hash)
BASE=$LAB_CACHE/opsguard-base-$BASE_HASH.tar
HASH=$({ echo "$BASE_HASH"; sha256sum <"$BINARY"; } | sha256sum | cut -c1-12)
IMAGE=$IMAGE_NAME:$HASH

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    docker tag "$IMAGE" "$IMAGE_NAME:latest"
    log "image $IMAGE is cached (tagged $IMAGE_NAME:latest)"
    echo "$IMAGE"
    exit 0
fi

mkdir -p "$LAB_CACHE/debs"
exec 9>"$LAB_CACHE/build-opsguard.lock"
flock 9
START=$(date +%s)

if [ "${FORCE:-0}" = 1 ] || [ ! -s "$BASE" ]; then
    ensure_debootstrap
    ROOT=$LAB_CACHE/opsguard-rootfs-$BASE_HASH
    case $ROOT in "$LAB_CACHE"/opsguard-rootfs-?*) ;; *) die "unexpected rootfs path '$ROOT'" ;; esac
    remove_rootfs "$ROOT"
    MIRROR=$(debian_mirror)
    # --- base recipe (its text is the base tarball's cache key)
    log "debootstrap --variant=minbase $SUITE from $MIRROR"
    if ! debootstrap --variant=minbase --cache-dir="$LAB_CACHE/debs" \
            "$SUITE" "$ROOT" "$MIRROR" >"$LAB_CACHE/debootstrap-opsguard.log" 2>&1; then
        tail -n 30 "$LAB_CACHE/debootstrap-opsguard.log" >&2
        remove_rootfs "$ROOT"
        die "debootstrap failed (full log: $LAB_CACHE/debootstrap-opsguard.log)"
    fi
    for m in $(findmnt -rn -o TARGET | grep -F "$ROOT" | sort -r); do umount -l "$m" || true; done
    # Nothing but the C library and a shell is needed: drop apt's caches,
    # documentation and locales.
    rm -rf "${ROOT:?}"/var/lib/apt/lists/* "${ROOT:?}"/var/cache/apt/*.bin "${ROOT:?}"/var/cache/apt/archives/*.deb \
        "${ROOT:?}"/usr/share/doc/* "${ROOT:?}"/usr/share/man/* "${ROOT:?}"/usr/share/info/* \
        "${ROOT:?}"/var/cache/debconf/*-old "${ROOT:?}"/var/log/*.log "${ROOT:?}"/var/log/apt/* \
        "${ROOT:?}"/usr/share/i18n/locales
    find "${ROOT:?}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'en*' ! -name locale.alias \
        -exec rm -rf {} + 2>/dev/null || true
    rm -f "${ROOT:?}/etc/hostname" "${ROOT:?}/etc/resolv.conf"
    mkdir -p "$ROOT/var/lib/opsguard" "$ROOT/run/opsguard" "$ROOT/etc/opsguard"
    # --- end of base recipe
    tar --numeric-owner --xattrs -C "$ROOT" -cf "$BASE.tmp" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./debootstrap' .
    mv "$BASE.tmp" "$BASE"
    remove_rootfs "$ROOT"
    find "$LAB_CACHE" -maxdepth 1 -name 'opsguard-base-*.tar' ! -name "opsguard-base-$BASE_HASH.tar" -delete
fi

# The base plus the binary, as one tarball for docker import.
STAGE=$(mktemp -d "$LAB_CACHE/opsguard-stage.XXXXXX")
trap 'safe_rm_rf "$LAB_CACHE" "$STAGE"' EXIT
cp "$BASE" "$STAGE/image.tar"
mkdir -p "$STAGE/root/usr/local/bin"
install -m 0755 "$BINARY" "$STAGE/root/usr/local/bin/opsguard"
tar --numeric-owner --owner=0 --group=0 -C "$STAGE/root" -rf "$STAGE/image.tar" ./usr/local/bin/opsguard

VERSION=$("$BINARY" --version 2>/dev/null | awk '{print $2}')
log "docker import -> $IMAGE (opsguard ${VERSION:-?})"
# Stopped with SIGTERM (handled: open incidents close as interrupted within
# 8 s, under Docker's 10 s); the audit log lives on the /var/lib/opsguard
# volume; the instance lock in /run/opsguard (shared with the host, so one
# acting agent per Docker endpoint).
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV OPSGUARD_AUDIT=/var/lib/opsguard/audit.jsonl' \
    --change 'VOLUME ["/var/lib/opsguard"]' \
    --change "LABEL org.opencontainers.image.title=opsguard org.opencontainers.image.version=${VERSION:-unknown} opsguard.image.recipe=$HASH" \
    --change 'ENTRYPOINT ["/usr/local/bin/opsguard"]' \
    --change 'CMD ["watch", "--approve", "deny"]' \
    --message "opsguard ${VERSION:-}, image recipe $HASH" \
    "$STAGE/image.tar" "$IMAGE" >/dev/null
docker tag "$IMAGE" "$IMAGE_NAME:latest"
for old in $(docker images --format '{{.Repository}}:{{.Tag}}' "$IMAGE_NAME" | grep -v -e ":latest$" -e ":$HASH$"); do
    docker rmi "$old" >/dev/null 2>&1 || true
done
log "built $IMAGE in $(( $(date +%s) - START ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
echo "$IMAGE"
