# int8 conv (benchmarks/conv_bench.cpp) against its scalar twin and the Eigen
# fp32 conv, whose baselines are built with -O3 -mavx2 -mfma in their own library.
add_library(qprune_conv_baseline STATIC ${CMAKE_CURRENT_SOURCE_DIR}/conv_baseline.cpp)
target_link_libraries(qprune_conv_baseline PRIVATE Eigen3::Eigen)
target_compile_options(qprune_conv_baseline PRIVATE -O3 -mavx2 -mfma)
qprune_add_benchmark(conv_bench conv_bench.cpp)
target_link_libraries(conv_bench PRIVATE qprune_conv_baseline)
