# examples/train_fashion_mnist.cpp: the issue #6 training recipe (MLP and CNN on
# Fashion-MNIST). Examples may use the build machine's ISA for Eigen's GEMMs; the
# exported qprune target stays flag-free.
include(CheckCXXCompilerFlag)
qprune_add_example(train_fashion_mnist train_fashion_mnist.cpp)
target_compile_options(train_fashion_mnist PRIVATE -O3)
check_cxx_compiler_flag("-mavx2 -mfma" QPRUNE_EXAMPLES_HAVE_AVX2_FMA)
if(QPRUNE_EXAMPLES_HAVE_AVX2_FMA)
  target_compile_options(train_fashion_mnist PRIVATE -mavx2 -mfma)
endif()

if(QPRUNE_BUILD_TESTS)
  add_test(NAME example.train_fashion_mnist.smoke
           COMMAND train_fashion_mnist --model mlp --epochs 1 --train-limit 2000 --test-limit 1000)
  add_test(NAME example.train_fashion_mnist_cnn.smoke
           COMMAND train_fashion_mnist --model cnn --epochs 1 --train-limit 512 --test-limit 500)
  set_tests_properties(example.train_fashion_mnist.smoke example.train_fashion_mnist_cnn.smoke
                       PROPERTIES LABELS "example" TIMEOUT 120)
endif()
