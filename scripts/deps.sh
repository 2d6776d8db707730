# Sourced by scripts/main.sh and scripts/test.sh: installs, with apt, whatever
# Debian 12 packages the build needs and are missing. Needs root (or sudo).
qprune_install_deps() {
  local wanted=("$@") missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "qprune: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

QPRUNE_BUILD_PACKAGES=(cmake ninja-build g++ libeigen3-dev zlib1g-dev nlohmann-json3-dev)
# clang + libclang-rt-14-dev (libclang_rt.fuzzer*.a, ASan/UBSan runtimes): the libFuzzer
# targets of tests/fuzz, built and run by the fuzz.* ctest tests.
QPRUNE_TEST_PACKAGES=(googletest libgtest-dev libbenchmark-dev nlohmann-json3-dev dataset-fashion-mnist
                      clang libclang-rt-14-dev)
