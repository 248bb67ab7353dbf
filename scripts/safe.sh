# Guards for the scripts that run as root (sourced, not executed):
#   safe_rm_rf ROOT PATH   rm -rf that refuses an empty, relative or
#                          unexpected PATH (anything not strictly below ROOT)
#   private_dir DIR        creates DIR 0700 and checks that only we can write
#                          it: for pid files, logs and other run state, never a
#                          predictable name in the world-writable /tmp
#   run_state_dir NAME [OVERRIDE]
#                          where a script keeps NAME's run state (pid, URL,
#                          log): OVERRIDE if set, else /run/NAME as root, else
#                          $XDG_RUNTIME_DIR/NAME, else ~/.cache/NAME
# scripts/check-root-scripts.sh tests both.
# shellcheck shell=bash

safe_say() { printf '[safe] %s\n' "$*" >&2; }

# safe_rm_rf ROOT PATH: rm -rf --one-file-system PATH, as root, only when
# PATH is strictly below ROOT and both are sane: set, absolute, no `..`,
# ROOT not a top-level directory (/, /var, /tmp...), PATH not a symlink.
# A variable that is empty or points somewhere unexpected deletes nothing:
# the function says why and fails.
safe_rm_rf() {
    local root=${1-} path=${2-} p
    for p in "$root" "$path"; do
        case $p in
            '' | *[!/]*) ;;
            *) safe_say "refusing to rm -rf: '$p' is /"; return 1 ;;
        esac
        case $p in
            '') safe_say "refusing to rm -rf: an empty path (root '$root', path '$path')"; return 1 ;;
            /*) ;;
            *) safe_say "refusing to rm -rf: '$p' is not absolute"; return 1 ;;
        esac
        case /$p/ in
            */../* | */./*) safe_say "refusing to rm -rf: '$p' has . or .. in it"; return 1 ;;
        esac
    done
    root=${root%/}; while [ "${root%/}" != "$root" ]; do root=${root%/}; done
    path=${path%/}; while [ "${path%/}" != "$path" ]; do path=${path%/}; done
    # At least two levels deep: /var/lib/x, not /var.
    case $root in
        /*/*) ;;
        *) safe_say "refusing to rm -rf below '$root': too close to /"; return 1 ;;
    esac
    case $path in
        "$root"/?*) ;;
        *) safe_say "refusing to rm -rf '$path': not below '$root'"; return 1 ;;
    esac
    if [ -L "$path" ]; then
        safe_say "refusing to rm -rf '$path': a symlink"; return 1
    fi
    [ -e "$path" ] || return 0
    # The root itself must not lead elsewhere through a symlink either.
    if [ "$(cd "$root" 2>/dev/null && pwd -P)" != "$root" ]; then
        safe_say "refusing to rm -rf below '$root': it is not a real directory of that name"; return 1
    fi
    rm -rf --one-file-system -- "$path"
}

private_dir() {
    local d=${1-} mode
    case $d in
        /?*) ;;
        *) safe_say "refusing '$d' as a private directory: not an absolute path"; return 1 ;;
    esac
    if [ -L "$d" ]; then
        safe_say "refusing '$d' as a private directory: a symlink"; return 1
    fi
    (umask 077 && mkdir -p -- "$d") || return 1
    if [ ! -d "$d" ] || [ -L "$d" ] || [ "$(stat -c %u -- "$d")" != "$(id -u)" ]; then
        safe_say "refusing '$d' as a private directory: not a directory of ours"; return 1
    fi
    mode=$(stat -c %A -- "$d")
    case $mode in
        ?????w???? | ????????w?) safe_say "refusing '$d' as a private directory: others can write it ($mode)"; return 1 ;;
    esac
}

# run_state_dir NAME [OVERRIDE]: never /tmp, so a local user cannot plant a
# pid file or a URL there for a root script to trust.
run_state_dir() {
    local name=${1:?run_state_dir needs a name} override=${2-}
    if [ -n "$override" ]; then
        echo "$override"
    elif [ "$(id -u)" -eq 0 ]; then
        echo "/run/$name"
    elif [ -n "${XDG_RUNTIME_DIR:-}" ]; then
        echo "$XDG_RUNTIME_DIR/$name"
    else
        echo "${HOME:?}/.cache/$name"
    fi
}
