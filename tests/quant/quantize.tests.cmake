qprune_add_test_binary(qprune_quant_quantize_tests quant/quantize_test.cpp quant/int4_test.cpp quant/report_test.cpp)
