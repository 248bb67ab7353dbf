#!/bin/bash
# The lab's stateless service, shop-api, and its one-shot job, shop-migrate
# (docker-compose.yml, profile "shop"):
#   lab/shop.sh up     (re)create them from the compose file, fresh (no chaos
#                      marker left in shop-api), and wait until shop-api is
#                      healthy and shop-migrate has exited 0;
#   lab/shop.sh down   remove them.
# The specification's lab (lab/up.sh) must be up: shop-api uses its image.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
lab_lock

SERVICE=shop-api
JOB=shop-migrate

case "${1:-}" in
    up)
        docker image inspect "$OPSGUARD_LAB_IMAGE" >/dev/null 2>&1 || die "no $OPSGUARD_LAB_IMAGE: run lab/up.sh first"
        compose --profile shop up -d --force-recreate --no-deps "$SERVICE" 2>&1 | sed 's/^/    /' >&2
        end=$(( $(date +%s) + 60 ))
        while :; do
            health=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$SERVICE" 2>/dev/null || true)
            [ "$health" = running/healthy ] && break
            [ "$(date +%s)" -ge "$end" ] && die "$SERVICE not healthy within 60 s ($health)"
            sleep 0.5
        done
        log "$SERVICE is up and healthy"
        compose --profile shop up -d --force-recreate --no-deps "$JOB" 2>&1 | sed 's/^/    /' >&2
        end=$(( $(date +%s) + 60 ))
        while :; do
            state=$(docker inspect -f '{{.State.Status}}/{{.State.ExitCode}}' "$JOB" 2>/dev/null || true)
            [ "$state" = exited/0 ] && break
            case "$state" in exited/*|dead/*) die "$JOB ended $state, not exited/0";; esac
            [ "$(date +%s)" -ge "$end" ] && die "$JOB did not finish within 60 s ($state)"
            sleep 0.5
        done
        log "$JOB ran and exited 0"
        ;;
    down)
        compose --profile shop rm -f -s -v "$SERVICE" "$JOB" 2>&1 | sed 's/^/    /' >&2 || true
        # A container of that name from anywhere else is not ours to remove.
        for c in "$SERVICE" "$JOB"; do
            if docker ps -aq --filter "name=^/$c\$" --filter "label=$LAB_LABEL" | grep -q .; then
                docker rm -f -v "$c" >/dev/null
            fi
        done
        log "$SERVICE and $JOB removed"
        ;;
    *)
        die "usage: lab/shop.sh up|down"
        ;;
esac
