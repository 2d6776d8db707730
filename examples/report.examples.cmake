# examples/fashion_mnist_report.cpp: the main job (issue #8), the README's first command.
include(CheckCXXCompilerFlag)
qprune_add_example(fashion_mnist_report fashion_mnist_report.cpp)
target_compile_options(fashion_mnist_report PRIVATE -O3)
check_cxx_compiler_flag("-mavx2 -mfma" QPRUNE_EXAMPLES_HAVE_AVX2_FMA)
if(QPRUNE_EXAMPLES_HAVE_AVX2_FMA)
  target_compile_options(fashion_mnist_report PRIVATE -mavx2 -mfma)
endif()

if(QPRUNE_BUILD_TESTS)
  # A small subset: every quick variant is built, saved, reloaded by the next run and measured.
  add_test(NAME example.fashion_mnist_report.smoke
           COMMAND fashion_mnist_report --epochs 1 --train-limit 1024 --test-limit 500
                   --out ${CMAKE_CURRENT_BINARY_DIR}/report-smoke --retrain)
  set_tests_properties(example.fashion_mnist_report.smoke PROPERTIES LABELS "example" TIMEOUT 300)
endif()
if(QPRUNE_BUILD_TESTS)
  # The second run reuses the float model the first one saved.
  add_test(NAME example.fashion_mnist_report.reuse
           COMMAND fashion_mnist_report --epochs 1 --train-limit 1024 --test-limit 500
                   --out ${CMAKE_CURRENT_BINARY_DIR}/report-smoke)
  set_tests_properties(example.fashion_mnist_report.smoke PROPERTIES FIXTURES_SETUP report_smoke)
  set_tests_properties(example.fashion_mnist_report.reuse PROPERTIES FIXTURES_REQUIRED report_smoke
                       LABELS "example" TIMEOUT 300 PASS_REGULAR_EXPRESSION "reusing the float model")
endif()
