# Build settings for qprune's own tests, benchmarks and examples. Nothing here is
# exported or installed: consumers of qprune::qprune never see these flags.

# Warnings as errors on our own translation units only.
add_library(qprune_warnings INTERFACE)
target_compile_options(qprune_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wconversion -Wshadow -Werror>)

# ASan + UBSan, every finding fatal; assertions (QPRUNE_ASSERT) forced on.
add_library(qprune_sanitize INTERFACE)
target_compile_options(qprune_sanitize INTERFACE
  -Og -g1 -fno-omit-frame-pointer -UNDEBUG
  -fsanitize=address,undefined -fno-sanitize-recover=all)
target_link_options(qprune_sanitize INTERFACE
  -fsanitize=address,undefined -fno-sanitize-recover=all)
