// Reads a PyTorch observer's configuration from an observers.json case
// (tests/data/quant/README.md): absent keys take torch's defaults.
#pragma once

#include <stdexcept>
#include <string>

#include "qprune/quant/qparams.hpp"
#include "support/json.hpp"

namespace qprune::test {

inline quant::pytorch::observer_config config_from(const json& c) {
  namespace pytorch = quant::pytorch;
  const json& kw = c["kwargs"];
  pytorch::observer_config cfg;
  const bool per_channel = c["observer"].get<std::string>().find("PerChannel") != std::string::npos;
  cfg.scheme = per_channel ? pytorch::qscheme::per_channel_affine : pytorch::qscheme::per_tensor_affine;
  if (kw.contains("dtype")) cfg.type = kw["dtype"] == "qint8" ? quant::dtype::int8 : quant::dtype::uint8;
  if (kw.contains("qscheme")) {
    const std::string s = kw["qscheme"];
    if (s == "per_tensor_affine") cfg.scheme = pytorch::qscheme::per_tensor_affine;
    else if (s == "per_tensor_symmetric") cfg.scheme = pytorch::qscheme::per_tensor_symmetric;
    else if (s == "per_channel_affine") cfg.scheme = pytorch::qscheme::per_channel_affine;
    else if (s == "per_channel_symmetric") cfg.scheme = pytorch::qscheme::per_channel_symmetric;
    else throw std::runtime_error("unknown qscheme " + s);
  }
  if (kw.contains("reduce_range")) cfg.reduce_range = kw["reduce_range"].get<bool>();
  if (kw.contains("quant_min")) cfg.custom_range = quant::qrange{kw["quant_min"].get<int>(), kw["quant_max"].get<int>()};
  cfg.eps = f32(c["eps_bits"][0]);
  return cfg;
}

}  // namespace qprune::test
