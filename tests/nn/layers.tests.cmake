qprune_add_test_binary(qprune_nn_layers_tests nn/layers_test.cpp nn/optim_test.cpp)
