qprune_add_test_binary(qprune_prune_masks_tests prune/masks_test.cpp prune/magnitude_test.cpp prune/n_m_test.cpp prune/schedule_test.cpp)
