# examples/fashion_mnist_report.cpp: the main job, the README's first command.
qprune_add_optimized_example(fashion_mnist_report fashion_mnist_report.cpp)

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
