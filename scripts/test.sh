#!/usr/bin/env bash
# The whole test suite: unit tests, the property suite (10,000 cases per
# property unless PROPTEST_CASES says otherwise) and the doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

export PROPTEST_CASES="${PROPTEST_CASES:-10000}"
cargo test --all-targets --locked
cargo test --doc --locked
