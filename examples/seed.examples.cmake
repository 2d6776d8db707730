# The "seed story" examples (examples/fmnist_common.hpp + one .cpp each): post-training
# int8 as TFLite does it, a user-written QAT layer deployed by hand, a user-written
# pruned Dense with CSR storage, and user-written quantizer / pruner policies. Each
# trains on Fashion-MNIST; the smoke tests use small subsets (a few seconds each).
foreach(name ptq_int8 qat_custom_layer pruned_dense custom_policy)
  qprune_add_optimized_example(${name} ${name}.cpp)
endforeach()

if(QPRUNE_BUILD_TESTS)
  add_test(NAME example.ptq_int8.smoke
           COMMAND ptq_int8 --epochs 1 --train-limit 2000 --test-limit 1000 --calib 200 --runs 200)
  add_test(NAME example.qat_custom_layer.smoke
           COMMAND qat_custom_layer --epochs 1 --train-limit 2000 --test-limit 1000)
  add_test(NAME example.pruned_dense.smoke
           COMMAND pruned_dense --epochs 2 --train-limit 2000 --test-limit 1000)
  add_test(NAME example.custom_policy.smoke
           COMMAND custom_policy --epochs 1 --train-limit 1000 --test-limit 500)
  set_tests_properties(example.ptq_int8.smoke example.qat_custom_layer.smoke
                       example.pruned_dense.smoke example.custom_policy.smoke
                       PROPERTIES LABELS "example" TIMEOUT 120)
endif()
