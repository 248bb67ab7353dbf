#!/usr/bin/env bash
# Checks the guards of the scripts that run as root (scripts/safe.sh), by
# running them against a sandbox, and scans the scripts for what the guards
# exist for:
#   - safe_rm_rf deletes below its root and refuses an empty variable, /, a
#     relative path, `..`, a path outside the root, a symlink, a root too
#     close to / -- deleting nothing then;
#   - private_dir refuses a symlink or a directory others can write;
#   - llm/lib.sh keeps the model server's pid file and log out of /tmp;
#   - no script names a path in /tmp, every rm -r of a variable goes through
#     safe_rm_rf or ${VAR:?}, every pip install takes binary wheels only with
#     pinned sha256 hashes, and every requirement is pinned and hashed.
# Needs no root, no network, no Docker. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

FAILS=0
ok() { printf '[check-root-scripts] ok   %s\n' "$*" >&2; }
bad() { FAILS=$((FAILS + 1)); printf '[check-root-scripts] FAIL %s\n' "$*" >&2; }

SANDBOX=$(mktemp -d)
cleanup() { [ -n "${SANDBOX:-}" ] && [ -d "$SANDBOX" ] && rm -rf --one-file-system -- "${SANDBOX:?}"; }
trap cleanup EXIT

# shellcheck source=safe.sh
. scripts/safe.sh

# ---- safe_rm_rf, for real, in the sandbox ------------------------------------
fresh() { # a root with a victim inside, and a canary outside it
    rm -rf -- "${SANDBOX:?}"/*
    mkdir -p "$SANDBOX/root/victim/sub" "$SANDBOX/outside"
    echo keep >"$SANDBOX/outside/canary"
    echo data >"$SANDBOX/root/victim/sub/file"
}
intact() { [ -f "$SANDBOX/outside/canary" ] && [ -f "$SANDBOX/root/victim/sub/file" ]; }
refuses() { # WHY ROOT PATH
    local why=$1
    shift
    fresh
    if safe_rm_rf "$@" 2>/dev/null; then
        bad "safe_rm_rf accepted $why: $*"
    elif ! intact; then
        bad "safe_rm_rf refused $why but deleted something"
    else
        ok "safe_rm_rf refuses $why"
    fi
}
EMPTY=""
refuses "an empty path" "$SANDBOX/root" "$EMPTY"
refuses "an empty root" "$EMPTY" "$SANDBOX/root/victim"
refuses "/ as the path" "$SANDBOX/root" /
refuses "/ as the root" / "$SANDBOX/root/victim"
refuses "a root next to /" /tmp "/tmp/${SANDBOX#/tmp/}"
refuses "the root itself" "$SANDBOX/root" "$SANDBOX/root"
refuses "the root with a trailing slash" "$SANDBOX/root" "$SANDBOX/root/"
refuses "a relative path" "$SANDBOX/root" "root/victim"
refuses "a path with .." "$SANDBOX/root" "$SANDBOX/root/../outside"
refuses "a path outside the root" "$SANDBOX/root" "$SANDBOX/outside"
refuses "a sibling with the root's name as prefix" "$SANDBOX/root" "$SANDBOX/rootx"
fresh
ln -s "$SANDBOX/outside" "$SANDBOX/root/link"
if safe_rm_rf "$SANDBOX/root" "$SANDBOX/root/link" 2>/dev/null || [ ! -f "$SANDBOX/outside/canary" ]; then
    bad "safe_rm_rf followed or accepted a symlink"
else
    ok "safe_rm_rf refuses a symlink"
fi
fresh
ln -s "$SANDBOX/outside" "$SANDBOX/root-link"
mkdir -p "$SANDBOX/outside/victim"
if safe_rm_rf "$SANDBOX/root-link" "$SANDBOX/root-link/victim" 2>/dev/null || [ ! -d "$SANDBOX/outside/victim" ]; then
    bad "safe_rm_rf deleted below a root that is a symlink"
else
    ok "safe_rm_rf refuses a root that is a symlink"
fi
fresh
if safe_rm_rf "$SANDBOX/root" "$SANDBOX/root/victim" && [ ! -e "$SANDBOX/root/victim" ] \
    && [ -f "$SANDBOX/outside/canary" ] && [ -d "$SANDBOX/root" ]; then
    ok "safe_rm_rf deletes a directory below its root, and only that"
else
    bad "safe_rm_rf did not delete $SANDBOX/root/victim (or more)"
fi
fresh
if safe_rm_rf "$SANDBOX/root" "$SANDBOX/root/missing"; then
    ok "safe_rm_rf: a missing path is not an error"
else
    bad "safe_rm_rf failed on a missing path"
fi

# ---- private_dir ---------------------------------------------------------------
if private_dir "$SANDBOX/state/llm" && [ "$(stat -c %a "$SANDBOX/state/llm")" = 700 ]; then
    ok "private_dir creates a 0700 directory"
else
    bad "private_dir did not create a 0700 directory"
fi
ln -s "$SANDBOX/outside" "$SANDBOX/planted"
if private_dir "$SANDBOX/planted" 2>/dev/null; then bad "private_dir accepted a symlink"; else ok "private_dir refuses a symlink"; fi
mkdir -p "$SANDBOX/shared"
chmod 0777 "$SANDBOX/shared"
if private_dir "$SANDBOX/shared" 2>/dev/null; then
    bad "private_dir accepted a world-writable directory"
else
    ok "private_dir refuses a directory others can write"
fi
if private_dir "relative" 2>/dev/null || private_dir "" 2>/dev/null; then
    bad "private_dir accepted a relative or empty path"
else
    ok "private_dir refuses a relative or empty path"
fi

# ---- the model server's state ------------------------------------------------------
state=$(env -u OPSGUARD_LLM_STATE_DIR -u OPSGUARD_LLM_PIDFILE -u OPSGUARD_LLM_LOG \
    bash -c '. llm/lib.sh; echo "$LLM_STATE_DIR $PIDFILE $LOG"')
case " $state" in
    *" /tmp"* | *" /var/tmp"*) bad "llm/lib.sh keeps state in a shared temp dir: $state" ;;
    *) ok "llm/lib.sh keeps the pid file and log in $(cut -d' ' -f1 <<<"$state")" ;;
esac

# ---- scans of the scripts ------------------------------------------------------------
SCRIPTS=(scripts/*.sh lab/*.sh llm/*.sh .ci/run)
code() { # FILE: its lines without comments, numbered
    grep -n -v -E '^\s*#' "$1" | sed -E 's/\s+#\s.*$//' || true
}
for f in "${SCRIPTS[@]}"; do
    [ "$f" = scripts/check-root-scripts.sh ] && continue
    if hits=$(code "$f" | grep -E '(^|[^A-Za-z0-9_])/(var/)?tmp(/|\b)'); then
        bad "$f names a path in /tmp: $hits"
    fi
    if [ "$f" != scripts/safe.sh ]; then
        # rm -r / -rf / -fr of a variable that is not ${VAR:?}
        if hits=$(code "$f" | grep -E '(^|[;&|[:space:]])rm\s+(-[a-zA-Z]*[rR][a-zA-Z]*\s+)' \
            | grep -E 'rm\s.*\$([A-Za-z_]|\{[A-Za-z_][A-Za-z0-9_]*\})'); then
            bad "$f: rm -r of an unguarded variable (use safe_rm_rf or \${VAR:?}): $hits"
        fi
    fi
    # every pip install: binary wheels only, hashes required
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        n=${line%%:*}
        cmd=$(sed -n "${n},$((n + 3))p" "$f" | tr '\n' ' ')
        if [[ $cmd != *--require-hashes* || $cmd != *--only-binary* ]]; then
            bad "$f:$n: pip install without --require-hashes and --only-binary: $cmd"
        fi
    done < <(code "$f" | grep -E 'pip["]?\s+install' || true)
done
for r in llm/requirements-*.txt; do
    reqs=$(grep -c -E '^[A-Za-z0-9._-]+' "$r" || true)
    pinned=$(grep -c -E '^[A-Za-z0-9._-]+==[^ ]+ \\$' "$r" || true)
    hashes=$(grep -c -E '^\s+--hash=sha256:[0-9a-f]{64}$' "$r" || true)
    if [ "$reqs" -ge 1 ] && [ "$reqs" = "$pinned" ] && [ "$hashes" -ge "$reqs" ]; then
        ok "$r: $reqs requirement(s), pinned with sha256"
    else
        bad "$r: $reqs requirement(s), $pinned pinned, $hashes hash(es)"
    fi
done
[ "$FAILS" = 0 ] && ok "scripts: no /tmp paths, rm -r guarded, pip pinned with hashes"

cd "$REPO"
if [ "$FAILS" -gt 0 ]; then
    printf '[check-root-scripts] %d check(s) failed\n' "$FAILS" >&2
    exit 1
fi
