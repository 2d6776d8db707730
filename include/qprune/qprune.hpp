// qprune: quantization and pruning of neural-network weights, header-only C++20.
// The umbrella header: includes every public header and nothing else.
#pragma once

#include "qprune/core/config.hpp"
#include "qprune/core/eigen.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/convert.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/reference/convert.hpp"
#include "qprune/kernels/x86/convert.hpp"
