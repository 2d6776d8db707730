qprune_add_test_binary(qprune_io_format_tests io/format_test.cpp)
# The tool's smoke tests live in the same binary and run the built `qprune`.
if(TARGET qprune_cli)
  foreach(t qprune_io_format_tests qprune_io_format_tests_asan)
    if(TARGET ${t})
      target_compile_definitions(${t} PRIVATE QPRUNE_CLI="$<TARGET_FILE:qprune_cli>")
      add_dependencies(${t} qprune_cli)
    endif()
  endforeach()
endif()

# Fuzzers: tests/fuzz is a separate clang++ project (-fsanitize=fuzzer,address,undefined).
# fuzz.build configures and builds it once; fuzz.<name> runs each <name>_fuzz.cpp
# for QPRUNE_FUZZ_SECONDS on its seed corpus (new inputs go to the build dir, not
# the source tree) and fails on any crash, leak, timeout or sanitizer report.
# Without clang++ the tests are skipped with a message (scripts/deps.sh installs it).
set(QPRUNE_FUZZ_SECONDS 13 CACHE STRING "Seconds each libFuzzer target runs under ctest")
set(qprune_fuzz_src ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
set(qprune_fuzz_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz)
add_test(NAME fuzz.build COMMAND sh -c
  "command -v clang++ >/dev/null 2>&1 || { echo 'SKIPPED: clang++ not found (install clang and libclang-rt-14-dev; scripts/deps.sh does)'; exit 77; }; cmake -S '${qprune_fuzz_src}' -B '${qprune_fuzz_bin}' -G '${CMAKE_GENERATOR}' -DCMAKE_CXX_COMPILER=clang++ >/dev/null && cmake --build '${qprune_fuzz_bin}' -j1")
set_tests_properties(fuzz.build PROPERTIES FIXTURES_SETUP qprune_fuzz SKIP_RETURN_CODE 77
                     TIMEOUT 1800 LABELS fuzz RUN_SERIAL TRUE)
file(GLOB qprune_fuzz_sources CONFIGURE_DEPENDS ${qprune_fuzz_src}/*_fuzz.cpp)
foreach(src IN LISTS qprune_fuzz_sources)
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "_fuzz$" "" corpus ${name})
  set(run "'${qprune_fuzz_bin}/${name}' -max_total_time=${QPRUNE_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048")
  string(APPEND run " -max_len=65536 -print_final_stats=1 -artifact_prefix='${qprune_fuzz_bin}/artifacts/${corpus}-'")
  string(APPEND run " '${qprune_fuzz_bin}/work/${corpus}' '${qprune_fuzz_src}/corpus/${corpus}'")
  add_test(NAME fuzz.${corpus} COMMAND sh -c
    "[ -x '${qprune_fuzz_bin}/${name}' ] || { echo 'SKIPPED: ${name} was not built (no clang++?)'; exit 77; }; rm -rf '${qprune_fuzz_bin}/work/${corpus}' && mkdir -p '${qprune_fuzz_bin}/work/${corpus}' '${qprune_fuzz_bin}/artifacts' && ${run}")
  set_tests_properties(fuzz.${corpus} PROPERTIES FIXTURES_REQUIRED qprune_fuzz SKIP_RETURN_CODE 77
                       TIMEOUT 120 LABELS fuzz RUN_SERIAL TRUE)
endforeach()
