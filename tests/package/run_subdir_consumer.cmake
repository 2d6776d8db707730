include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
run_step("configure a project that add_subdirectory()s qprune"
  ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DQPRUNE_SOURCE_DIR=${QPRUNE_SOURCE_DIR}
  -DCMAKE_BUILD_TYPE=Release)
run_step("build it" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run_step("run it" ${WORK_DIR}/build/consumer)
message(STATUS "${step_output}")
