# Sparse kernels (kernels/spmm.hpp) against Eigen's CSR and dense fp32 products.
add_library(qprune_sparse_baseline STATIC ${CMAKE_CURRENT_LIST_DIR}/sparse_baseline.cpp)
target_link_libraries(qprune_sparse_baseline PRIVATE Eigen3::Eigen)
target_compile_options(qprune_sparse_baseline PRIVATE -O3 -mavx2 -mfma)
qprune_add_benchmark(sparse_bench ${CMAKE_CURRENT_LIST_DIR}/sparse_bench.cpp)
target_link_libraries(sparse_bench PRIVATE qprune_sparse_baseline qprune_eigen_baseline)
