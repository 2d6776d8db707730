include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

run_step("install into a temporary prefix"
  ${CMAKE_COMMAND} --install ${QPRUNE_BINARY_DIR} --prefix ${prefix})

# The exported target must carry no -march/-m, warning or sanitizer flags.
file(GLOB_RECURSE targets_files ${prefix}/*/qpruneTargets*.cmake)
if(NOT targets_files)
  message(FATAL_ERROR "no qpruneTargets.cmake under ${prefix}")
endif()
foreach(f IN LISTS targets_files)
  file(READ ${f} content)
  foreach(bad "-march" "-mavx" "-fsanitize" "-Werror" "-Wall" "INTERFACE_COMPILE_OPTIONS" "INTERFACE_LINK_OPTIONS")
    string(FIND "${content}" "${bad}" pos)
    if(NOT pos EQUAL -1)
      message(FATAL_ERROR "${f} leaks '${bad}' into consumers")
    endif()
  endforeach()
endforeach()
if(NOT EXISTS ${prefix}/share/cmake/qprune/qpruneConfigVersion.cmake)
  message(FATAL_ERROR "qpruneConfigVersion.cmake is not installed under share/cmake/qprune")
endif()

run_step("configure the consumer against the installed package"
  ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run_step("build the consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run_step("run the consumer" ${WORK_DIR}/build/consumer)
message(STATUS "${step_output}")

# The version file is arch-independent and 0.x means only the same minor matches.
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build_v02
  -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix}
  -DQPRUNE_WANTED_VERSION=0.2 RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(rc EQUAL 0)
  message(FATAL_ERROR "find_package(qprune 0.2) accepted version 0.1")
endif()
message(STATUS "find_package(qprune 0.2) correctly rejects 0.1")
