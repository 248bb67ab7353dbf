#!/usr/bin/env bash
# The end-to-end, real-model, browser and Alertmanager tests need the lab, a
# local model, Chromium or Alertmanager. They must never read as passed when they did not run:
#   - a plain `cargo test` lists every one of them as ignored;
#   - run with --include-ignored but without their variable, every one of
#     them fails and says which variable is missing.
# Nothing here touches the lab, a model or a browser: each test fails before.
# Run by scripts/test.sh after the build; exit 1 on the first broken gate.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[check-gated-tests] $*" >&2; }

# BINARY VARIABLE: the test binary tests/BINARY.rs and the variable it needs.
check() {
    local bin=$1 var=$2 all ignored out
    all=$(cargo test --locked -q --test "$bin" -- --list 2>/dev/null | grep -c ': test$' || true)
    ignored=$(cargo test --locked -q --test "$bin" -- --list --ignored 2>/dev/null | grep -c ': test$' || true)
    if [ "$all" -eq 0 ] || [ "$ignored" -ne "$all" ]; then
        say "FAIL: tests/$bin.rs: $ignored of $all tests are #[ignore]d (all must be)"
        return 1
    fi
    if out=$(env -u OPSGUARD_E2E -u OPSGUARD_BROWSER -u OPSGUARD_LLM_URL -u OPSGUARD_ALERTMANAGER_URL \
        cargo test --locked -q --test "$bin" -- --include-ignored --test-threads=1 2>&1); then
        say "FAIL: tests/$bin.rs passed without $var:"
        tail -n 5 <<<"$out" >&2
        return 1
    fi
    if ! grep -q "test result: FAILED. 0 passed; $all failed" <<<"$out"; then
        say "FAIL: tests/$bin.rs without $var: want 0 passed and $all failed, got:"
        grep 'test result' <<<"$out" >&2 || tail -n 5 <<<"$out" >&2
        return 1
    fi
    if [ "$(grep -c -- "$var is not" <<<"$out")" -lt "$all" ]; then
        say "FAIL: tests/$bin.rs: not every failure names $var"
        return 1
    fi
    say "ok: tests/$bin.rs: $all tests ignored by default, all fail without $var"
}

check e2e OPSGUARD_E2E
check e2e_stateless OPSGUARD_E2E
check e2e_own_stack OPSGUARD_E2E
check clean_logs_docker OPSGUARD_E2E
check e2e_service OPSGUARD_E2E
check browser OPSGUARD_BROWSER
check llm_real_model OPSGUARD_LLM_URL
check notify_alertmanager OPSGUARD_ALERTMANAGER_URL
