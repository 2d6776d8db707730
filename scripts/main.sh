#!/usr/bin/env bash
# The main job: installs what is missing, builds the examples in Release and
# compresses a 1024x1024 layer every way qprune stores weights, printing bytes
# and error for each. Extra arguments go to the program.
#   bash scripts/main.sh [--rows N --cols N --seed S]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
qprune_install_deps "${QPRUNE_BUILD_PACKAGES[@]}"

build="${QPRUNE_MAIN_BUILD_DIR:-build-main}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DQPRUNE_BUILD_TESTS=OFF -DQPRUNE_BUILD_BENCHMARKS=OFF -DQPRUNE_BUILD_EXAMPLES=ON \
  -DQPRUNE_INSTALL=OFF > /dev/null
cmake --build "$build" -j "$(nproc)" --target compress_layer
exec "$build/examples/compress_layer" "$@"
