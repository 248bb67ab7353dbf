#!/bin/bash
# Makes sure what the lab needs is here and running: a Docker daemon (started
# if `docker info` fails), docker-compose and debootstrap. Idempotent; as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. lab/lib.sh
need_root

apt_install() { # PACKAGE...
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}

if ! docker info >/dev/null 2>&1; then
    log "docker info failed: starting dockerd"
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    (service docker start >/dev/null 2>&1 || true)
    if ! docker info >/dev/null 2>&1; then
        nohup dockerd >/var/log/opsguard-ci-dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -n 30 /var/log/opsguard-ci-dockerd.log >&2 || true; die "dockerd did not come up"; }
fi
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || apt_install docker-compose
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap

