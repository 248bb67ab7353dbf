#!/bin/bash
# The lab's second stack (docker-compose.yml, profile "shop"): its database,
# shop-db, its stateless service, shop-api, and its one-shot job,
# shop-migrate:
#   lab/shop.sh up     start shop-db if it is not running (its data is kept)
#                      and wait until it accepts connections; (re)create
#                      shop-api and shop-migrate from the compose file, fresh
#                      (no chaos marker left in shop-api), and wait until
#                      shop-api is healthy and shop-migrate has exited 0;
#   lab/shop.sh down   remove them (shop-db's data stays on its disk until
#                      lab/down.sh).
# The specification's lab (lab/up.sh) must be up: shop-api uses its image.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
lab_lock

DB=shop-db
SERVICE=shop-api
JOB=shop-migrate

case "${1:-}" in
    up)
        docker image inspect "$OPSGUARD_LAB_IMAGE" >/dev/null 2>&1 || die "no $OPSGUARD_LAB_IMAGE: run lab/up.sh first"
        mountpoint -q "$LAB_DIR/$SHOP_DB_DISK" || die "$LAB_DIR/$SHOP_DB_DISK is not mounted: run lab/up.sh first"
        # Not recreated when it runs as the compose file says: a database
        # keeps its data, and its initdb takes seconds.
        compose --profile shop up -d --no-deps "$DB" 2>&1 | sed 's/^/    /' >&2
        end=$(( $(date +%s) + 120 ))
        until docker exec "$DB" pg_isready -q -h 127.0.0.1 -U postgres 2>/dev/null; do
            state=$(docker inspect -f '{{.State.Status}}' "$DB" 2>/dev/null || true)
            if [ "$state" = exited ]; then
                docker logs --tail 20 "$DB" >&2 || true
                die "$DB exited: a leftover fault? lab/reset.sh gives a fresh lab"
            fi
            [ "$(date +%s)" -ge "$end" ] && die "$DB does not accept connections within 120 s ($state)"
            sleep 0.5
        done
        log "$DB accepts connections"
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
        compose --profile shop rm -f -s -v "$SERVICE" "$JOB" "$DB" 2>&1 | sed 's/^/    /' >&2 || true
        # A container of that name from anywhere else is not ours to remove.
        for c in "$SERVICE" "$JOB" "$DB"; do
            if docker ps -aq --filter "name=^/$c\$" --filter "label=$LAB_LABEL" | grep -q .; then
                docker rm -f -v "$c" >/dev/null
            fi
        done
        log "$DB, $SERVICE and $JOB removed"
        ;;
    *)
        die "usage: lab/shop.sh up|down"
        ;;
esac
