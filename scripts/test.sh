#!/usr/bin/env bash
# The test command: installs what is missing, configures and builds the
# tests (plain and ASan+UBSan), the header checks, the packaging tests, the
# benchmarks and examples, then runs everything through ctest.
#   bash scripts/test.sh            (build dir: build/, override with QPRUNE_BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
qprune_install_deps "${QPRUNE_BUILD_PACKAGES[@]}" "${QPRUNE_TEST_PACKAGES[@]}"

build="${QPRUNE_BUILD_DIR:-build}"
jobs="${QPRUNE_JOBS:-$(nproc)}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DQPRUNE_BUILD_TESTS=ON -DQPRUNE_SANITIZE_TESTS=ON \
  -DQPRUNE_BUILD_BENCHMARKS=ON -DQPRUNE_BUILD_EXAMPLES=ON
cmake --build "$build" -j "$jobs"
cd "$build"
exec ctest -j "$jobs" --output-on-failure
