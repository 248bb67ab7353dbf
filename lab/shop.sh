#!/bin/bash
# The lab's stateless service, shop-api (docker-compose.yml, profile "shop"):
#   lab/shop.sh up     (re)create it from the compose file, fresh (no chaos
#                      marker left in it), and wait until Docker says healthy;
#   lab/shop.sh down   remove it.
# The specification's lab (lab/up.sh) must be up: shop-api uses its image.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
lab_lock

SERVICE=shop-api

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
        ;;
    down)
        compose --profile shop rm -f -s -v "$SERVICE" 2>&1 | sed 's/^/    /' >&2 || true
        # A container of that name from anywhere else is not ours to remove.
        if docker ps -aq --filter "name=^/$SERVICE\$" --filter "label=$LAB_LABEL" | grep -q .; then
            docker rm -f -v "$SERVICE" >/dev/null
        fi
        log "$SERVICE removed"
        ;;
    *)
        die "usage: lab/shop.sh up|down"
        ;;
esac
