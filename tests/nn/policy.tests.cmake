# Compile-fail tests: a layer named with a non-policy must not compile, and the
# compiler must say which concept requirement failed. Each case is an
# EXCLUDE_FROM_ALL target that ctest tries to build; `control` (valid policies)
# must build, so the failures come from the concept checks and not from the TU.
set(qprune_nn_policy_cases
  "dense|QPRUNE_NOT_A_POLICY_DENSE|required type .*typename P::mask_type.* is invalid"
  "conv2d|QPRUNE_NOT_A_POLICY_CONV2D|required type .*typename P::mask_type.* is invalid"
  "weightq|QPRUNE_NOT_A_POLICY_WEIGHTQ|no type named .*storage_type.* in .*not_a_quantizer"
  "control|QPRUNE_NOT_A_POLICY_CONTROL|")
foreach(entry IN LISTS qprune_nn_policy_cases)
  string(REPLACE "|" ";" parts "${entry}")
  list(GET parts 0 case)
  list(GET parts 1 define)
  list(GET parts 2 regex)
  set(target qprune_nn_not_a_policy_${case})
  add_executable(${target} EXCLUDE_FROM_ALL nn/not_a_policy_compile_fail_test.cpp)
  target_link_libraries(${target} PRIVATE qprune::qprune)
  target_compile_definitions(${target} PRIVATE ${define})
  add_test(NAME nn.not_a_policy.${case}
           COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target ${target} --config $<CONFIG>)
  # One build-system invocation at a time in this build tree.
  set_tests_properties(nn.not_a_policy.${case} PROPERTIES LABELS "plain;compile_fail"
                       RESOURCE_LOCK qprune_build_tree TIMEOUT 300)
  if(regex)
    set_tests_properties(nn.not_a_policy.${case} PROPERTIES PASS_REGULAR_EXPRESSION "${regex}")
  endif()
endforeach()
