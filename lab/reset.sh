#!/bin/bash
# Return the lab to a fresh, healthy state: down (containers, zombies and
# disks removed) then up (new disks, fresh initdb). Takes ~10-20 s with the
# image cached.
set -euo pipefail
here=$(dirname "$0")
"$here/down.sh"
exec "$here/up.sh"
