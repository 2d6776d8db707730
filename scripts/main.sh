#!/usr/bin/env bash
# The main job: installs what is missing (the build packages and Debian's
# Fashion-MNIST), builds the examples in Release and runs the Fashion-MNIST
# compression report: the quick report by default (the MLP, a few minutes on
# 2 cores), the full one (MLP and CNN, every variant) with --full. Tables and the
# plot go to fashion_mnist_report/ (report.md, report.csv, report.svg); a second
# run reuses the float model the first one trained. Extra arguments go to the
# program (--full, --model mlp|cnn|both, --epochs N, --retrain, --out DIR, ...).
#   bash scripts/main.sh [--full]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
qprune_install_deps "${QPRUNE_BUILD_PACKAGES[@]}" dataset-fashion-mnist

build="${QPRUNE_MAIN_BUILD_DIR:-build-main}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DQPRUNE_BUILD_TESTS=OFF -DQPRUNE_BUILD_BENCHMARKS=OFF -DQPRUNE_BUILD_EXAMPLES=ON \
  -DQPRUNE_INSTALL=OFF > /dev/null
cmake --build "$build" -j "$(nproc)" --target fashion_mnist_report
exec "$build/examples/fashion_mnist_report" "$@"
