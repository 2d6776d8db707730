# int4 grouped-weight GEMM (kernels/gemm_q4.hpp) against Eigen fp32 on the
# dequantized weights; see the comment at the top of q4_bench.cpp.
qprune_add_benchmark(q4_bench q4_bench.cpp)
target_link_libraries(q4_bench PRIVATE qprune_eigen_baseline)
