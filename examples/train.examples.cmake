# examples/train_fashion_mnist.cpp: the training recipe (MLP and CNN on Fashion-MNIST).
qprune_add_optimized_example(train_fashion_mnist train_fashion_mnist.cpp)

if(QPRUNE_BUILD_TESTS)
  add_test(NAME example.train_fashion_mnist.smoke
           COMMAND train_fashion_mnist --model mlp --epochs 1 --train-limit 2000 --test-limit 1000)
  add_test(NAME example.train_fashion_mnist_cnn.smoke
           COMMAND train_fashion_mnist --model cnn --epochs 1 --train-limit 512 --test-limit 500)
  set_tests_properties(example.train_fashion_mnist.smoke example.train_fashion_mnist_cnn.smoke
                       PROPERTIES LABELS "example" TIMEOUT 120)
endif()
