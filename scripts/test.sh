#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it:
#   - unit tests, the property suite (10,000 cases per property unless
#     PROPTEST_CASES says otherwise) and the doc tests;
#   - the end-to-end scenarios against the real Docker lab (OPSGUARD_E2E=1):
#     Docker is started if needed, the lab image is built from Debian
#     packages (cached) and the lab brought up, and taken down afterwards;
#   - the lab's second stack, shop-db, shop-api and shop-migrate
#     (tests/e2e_stateless.rs), created and removed by lab/shop.sh around
#     each test;
#   - a Compose project of the user's own kind (tests/e2e_own_stack.rs,
#     tests/fixtures/own-stack), healed by the real `opsguard watch`
#     through its labels alone, on a 32 MB loop disk the test mounts;
#   - OpsGuard as a service (tests/e2e_service.rs): its own image, built
#     from Debian packages and the test build's binary (deploy/build-image.sh),
#     under docker-compose, stopped and started again, healing a chain
#     reaction while telling a webhook and Alertmanager; the Swarm stack on
#     a single-node swarm made for the test and left again; `watch` under a
#     notify socket; the systemd unit, compose and stack files verified;
#   - the real-model LLM test against a local llama.cpp server with
#     SmolLM2-135M from PyPI (OPSGUARD_LLM_URL), stopped afterwards;
#   - notifications against Debian's prometheus-alertmanager, installed if
#     missing and started on loopback by scripts/alertmanager.sh
#     (OPSGUARD_ALERTMANAGER_URL), stopped afterwards;
#   - the web console in headless Chromium (tests/browser.rs), with
#     Debian's chromium and chromium-driver, installed if missing
#     (OPSGUARD_BROWSER=1: a browser that does not start is a failure).
# The lab, model and browser tests are #[ignore]d for a plain `cargo test`;
# here they run (--include-ignored, one at a time: they share one lab),
# after a check that without their variables they fail rather than pass.
# Run as root (the lab needs Docker and loop mounts).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[test.sh] $*" >&2; }
T0=$(date +%s)
export PROPTEST_CASES="${PROPTEST_CASES:-10000}"

cleanup() {
    local rc=$?
    say "stopping the model server and Alertmanager, tearing the lab down"
    bash llm/stop.sh >/dev/null 2>&1 || true
    bash scripts/alertmanager.sh stop >/dev/null 2>&1 || true
    bash lab/down.sh >/dev/null 2>&1 || true
    say "finished in $(( $(date +%s) - T0 ))s (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the tests"
cargo test --all-targets --locked --no-run

say "checking that the lab, model and browser tests cannot pass without running"
bash scripts/check-gated-tests.sh
say "checking the guards of the scripts that run as root"
bash scripts/check-root-scripts.sh

say "installing Chromium for the browser tests if needed"
bash scripts/ensure-chromium.sh
export OPSGUARD_BROWSER=1

say "preparing Docker and the lab"
bash lab/ensure-docker.sh
bash lab/reset.sh

say "starting the local model server"
OPSGUARD_LLM_URL="$(bash llm/start.sh)"
case "$OPSGUARD_LLM_URL" in
    http://127.0.0.1:*) ;;
    *) say "refusing a non-loopback model URL: $OPSGUARD_LLM_URL"; exit 1 ;;
esac
export OPSGUARD_LLM_URL OPSGUARD_E2E=1

say "starting Alertmanager for the notification test"
OPSGUARD_ALERTMANAGER_URL="$(bash scripts/alertmanager.sh start)"
case "$OPSGUARD_ALERTMANAGER_URL" in
    http://127.0.0.1:*) ;;
    *) say "refusing a non-loopback Alertmanager URL: $OPSGUARD_ALERTMANAGER_URL"; exit 1 ;;
esac
export OPSGUARD_ALERTMANAGER_URL

say "running the tests"
cargo test --all-targets --locked
cargo test --doc --locked
say "the agent as --no-default-features builds it: no lab or chaos command"
cargo test --locked --no-default-features --test cli_docs
say "running the end-to-end, real-model, browser and Alertmanager tests"
cargo test --locked --test e2e --test e2e_stateless --test e2e_own_stack --test e2e_service --test clean_logs_docker --test browser \
    --test llm_real_model --test notify_alertmanager -- --include-ignored --test-threads=1
