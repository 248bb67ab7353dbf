#!/bin/bash
# Build the OpsGuard lab image without any container registry:
#   debootstrap --variant=minbase bookworm (+ nginx-light, postgresql-15, procps)
#   -> tar -> docker import  => opsguard-lab:<recipe-hash> and opsguard-lab:latest
#
# One image serves web-prod (nginx), db-prod (PostgreSQL 15 via the
# opsguard-pg entrypoint), zombie containers and short-lived helpers
# (df, truncate, dd, ...).
#
# Cached: the tag is a hash of this script, lab/image/* and the package list;
# nothing is built when that tag exists. The rootfs tarball is kept in
# $LAB_CACHE so a removed image is re-imported without a rebuild, and the
# downloaded .debs are kept in $LAB_CACHE/debs.
#
# Env: OPSGUARD_LAB_MIRROR (default: the Debian mirror from /etc/apt/sources*),
#      OPSGUARD_LAB_CACHE (default /var/cache/opsguard-lab), FORCE=1 to rebuild.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SUITE=bookworm
PACKAGES=nginx-light,postgresql-15,procps

recipe_hash() {
    { cat "$LAB_SRC/build-images.sh"; cat "$LAB_SRC"/image/*; echo "$SUITE $PACKAGES"; } \
        | sha256sum | cut -c1-12
}
HASH=$(recipe_hash)
IMAGE=$IMAGE_REPO:$HASH

tag_latest() { docker tag "$IMAGE" "$IMAGE_REPO:latest"; }

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    tag_latest
    log "image $IMAGE is cached (tagged $IMAGE_REPO:latest)"
    echo "$IMAGE"
    exit 0
fi

need_root
mkdir -p "$LAB_CACHE/debs"
exec 9>"$LAB_CACHE/build.lock"
flock 9
if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    tag_latest; echo "$IMAGE"; exit 0     # built meanwhile by another run
fi
START=$(date +%s)

TARBALL=$LAB_CACHE/rootfs-$HASH.tar
if [ "${FORCE:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
    ensure_debootstrap
    MIRROR=$(debian_mirror)
    ROOT=$LAB_CACHE/rootfs-$HASH
    # Everything below deletes inside $ROOT as root: it must be ours.
    case $ROOT in "$LAB_CACHE"/rootfs-?*) ;; *) die "unexpected rootfs path '$ROOT'" ;; esac
    remove_rootfs "$ROOT"
    log "debootstrap --variant=minbase $SUITE (+$PACKAGES) from $MIRROR"
    if ! debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$LAB_CACHE/debs" \
            "$SUITE" "$ROOT" "$MIRROR" >"$LAB_CACHE/debootstrap.log" 2>&1; then
        tail -n 30 "$LAB_CACHE/debootstrap.log" >&2
        [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
        remove_rootfs "$ROOT"
        die "debootstrap failed (full log: $LAB_CACHE/debootstrap.log)"
    fi
    for m in $(findmnt -rn -o TARGET | grep -F "$ROOT" | sort -r); do umount -l "$m" || true; done

    log "customising rootfs"
    # The package created a 'main' cluster at build time; the lab initialises
    # its own data directory (opsguard-pg) on the size-limited disk.
    rm -rf "${ROOT:?}/etc/postgresql/15/main" "${ROOT:?}/var/lib/postgresql/15" \
        "${ROOT:?}"/var/log/postgresql/*.log
    install -m 0755 "$LAB_SRC/image/opsguard-pg" "$ROOT/usr/local/bin/opsguard-pg"
    sed -i 's/^worker_processes .*/worker_processes 1;/' "$ROOT/etc/nginx/nginx.conf"
    # Slim down: apt lists/caches, docs, man pages, non-English locales.
    rm -rf "${ROOT:?}"/var/lib/apt/lists/* "${ROOT:?}"/var/cache/apt/*.bin "${ROOT:?}"/var/cache/apt/archives/*.deb \
        "${ROOT:?}"/usr/share/doc/* "${ROOT:?}"/usr/share/man/* "${ROOT:?}"/usr/share/info/* \
        "${ROOT:?}"/var/cache/debconf/*-old "${ROOT:?}"/var/log/*.log "${ROOT:?}"/var/log/apt/*
    # JIT is off in the lab: drop LLVM (about 130 MB) that only llvmjit.so uses.
    rm -f "${ROOT:?}"/usr/lib/postgresql/15/lib/llvmjit*.so "${ROOT:?}"/usr/lib/x86_64-linux-gnu/libLLVM-*.so* \
        "${ROOT:?}"/usr/lib/x86_64-linux-gnu/libz3.so*
    rm -rf "${ROOT:?}"/usr/lib/postgresql/15/lib/bitcode "${ROOT:?}"/usr/share/i18n/locales
    find "${ROOT:?}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'en*' ! -name locale.alias \
        -exec rm -rf {} + 2>/dev/null || true
    rm -f "${ROOT:?}/etc/hostname" "${ROOT:?}/etc/resolv.conf"
    echo "$IMAGE" >"$ROOT/etc/opsguard-lab-image"

    tar --numeric-owner --xattrs -C "$ROOT" -cf "$TARBALL.tmp" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./debootstrap' .
    mv "$TARBALL.tmp" "$TARBALL"
    remove_rootfs "$ROOT"
fi

log "docker import -> $IMAGE"
docker import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL opsguard.lab.recipe=$HASH" \
    --change 'CMD ["/bin/bash"]' \
    --message "opsguard lab image, recipe $HASH" \
    "$TARBALL" "$IMAGE" >/dev/null
tag_latest

# Keep only this recipe's tarball; drop older lab tags that are not in use.
find "$LAB_CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$HASH.tar" -delete
for old in $(docker images --format '{{.Repository}}:{{.Tag}}' "$IMAGE_REPO" | grep -v -e ":latest$" -e ":$HASH$"); do
    docker rmi "$old" >/dev/null 2>&1 || true
done

log "built $IMAGE in $(( $(date +%s) - START ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
echo "$IMAGE"
