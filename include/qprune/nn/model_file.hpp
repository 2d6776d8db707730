// Saving and loading nn models in the .qpr file (io/format.hpp):
//  - a deployed_model (nn/deployed.hpp) as its ops' weights in their deployed
//    form (int8 codes, packed int4, fp16/bf16, CSR / N:M) plus one JSON op list,
//    loaded back as a runnable model whose forward gives the same bits;
//  - the training state of a sequential<...> (parameters, masks, batch-norm
//    statistics, QAT input ranges), loaded into a network of the same architecture.
// JSON schema, tensor names, versions and errors: doc/format.md, "Models".
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/io/format.hpp"
#include "qprune/io/json.hpp"
#include "qprune/kernels/im2col.hpp"
#include "qprune/nn/activations.hpp"
#include "qprune/nn/batch_norm.hpp"
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/deployed.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/layer.hpp"
#include "qprune/nn/pooling.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/nn/traits.hpp"
#include "qprune/prune/mask.hpp"
#include "qprune/prune/sparse_storage.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/int8.hpp"
#include "qprune/quant/params.hpp"

namespace qprune::nn {

/// The "format" value of a deployed model's "qprune.model" JSON, and the only
/// "version" this header writes and reads.
inline constexpr std::string_view model_format_name = "qprune.deployed";
inline constexpr int model_format_version = 1;
/// The "format" value of a parameter file (save_parameters) and its version.
inline constexpr std::string_view parameters_format_name = "qprune.parameters";
inline constexpr int parameters_format_version = 1;

namespace detail::model_file {

using json = nlohmann::json;
namespace qpr = io::qpr;

/// Largest value accepted for an extent, a stride, a pad, a window in the JSON.
inline constexpr index_t max_json_extent = (index_t{1} << 31) - 1;
/// Largest activation (features per sample) a loaded model may produce.
inline constexpr index_t max_features = index_t{1} << 40;

/// A JSON value for a message, cut after 60 characters.
inline std::string short_dump(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

/// The message of a qprune::error without its "[qprune.<kind>] " prefix.
inline std::string plain(const std::exception& e) {
  std::string_view s = e.what();
  if (s.starts_with("[qprune.")) {
    const auto p = s.find("] ");
    if (p != std::string_view::npos) s.remove_prefix(p + 2);
  }
  return std::string(s);
}

/// a * b * ... when every factor is >= 0 and the product is at most `limit`.
inline std::optional<index_t> checked_product(std::initializer_list<index_t> v, index_t limit) {
  index_t p = 1;
  for (index_t x : v) {
    if (x < 0 || (x != 0 && p > limit / x)) return std::nullopt;
    p *= x;
  }
  return p;
}

/// Parses the metadata JSON: rejects nesting deeper than 8 and duplicate keys.
inline json parse_json(std::string_view text, const std::string& who) {
  const std::string head = who + ": metadata '" + std::string(qpr::model_metadata_key) + "' ";
  return io::detail::parse_strict_json(text, 8, [&](io::detail::json_problem p, const std::string& d) {
    switch (p) {
      case io::detail::json_problem::too_deep:
        return io_error(head + "is nested deeper than 8 levels (expected the model schema, doc/format.md)");
      case io::detail::json_problem::duplicate_key:
        return io_error(head + "has the key '" + d + "' twice in one object (expected unique keys)");
      default:
        return io_error(head + "is not valid JSON (" + d + ")");
    }
  });
}

/// Where a JSON value or tensor sits, for messages: "<file>: op 3 (dense.int8)".
class context {
 public:
  context(std::string who, std::string where) : who_(std::move(who)), where_(std::move(where)) {}
  [[noreturn]] void fail(const std::string& what) const { throw io_error(who_ + ": " + where_ + ": " + what); }
  const std::string& who() const noexcept { return who_; }

  /// obj[key]; fails when obj is not an object or lacks the key.
  const json& member(const json& obj, std::string_view key) const {
    if (!obj.is_object()) fail("is " + short_dump(obj) + " (expected a JSON object)");
    const auto it = obj.find(key);
    if (it == obj.end()) fail("has no \"" + std::string(key) + "\" (expected it in the schema, doc/format.md)");
    return *it;
  }
  index_t integer(const json& obj, std::string_view key, index_t lo, index_t hi) const {
    const json& v = member(obj, key);
    const auto bad = [&] {
      fail("\"" + std::string(key) + "\" is " + short_dump(v) + " (expected an integer in [" + std::to_string(lo) +
           ", " + std::to_string(hi) + "])");
    };
    if (!v.is_number_integer()) bad();
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(hi) || (lo > 0 && u < static_cast<std::uint64_t>(lo))) bad();
      return static_cast<index_t>(u);
    }
    const auto s = v.get<std::int64_t>();
    if (s < lo || s > hi) bad();
    return static_cast<index_t>(s);
  }
  bool boolean(const json& obj, std::string_view key) const {
    const json& v = member(obj, key);
    if (!v.is_boolean()) fail("\"" + std::string(key) + "\" is " + short_dump(v) + " (expected true or false)");
    return v.get<bool>();
  }
  /// A finite number that fits a float, converted to float.
  float number(const json& obj, std::string_view key) const {
    const json& v = member(obj, key);
    if (!v.is_number()) fail("\"" + std::string(key) + "\" is " + short_dump(v) + " (expected a number)");
    const double d = v.get<double>();
    if (!(std::fabs(d) <= static_cast<double>(std::numeric_limits<float>::max()))) {
      fail("\"" + std::string(key) + "\" is " + short_dump(v) + " (expected a finite float32 value)");
    }
    return static_cast<float>(d);
  }
  std::string string(const json& obj, std::string_view key) const {
    const json& v = member(obj, key);
    if (!v.is_string()) fail("\"" + std::string(key) + "\" is " + short_dump(v) + " (expected a string)");
    return v.get<std::string>();
  }

 private:
  std::string who_, where_;
};

/// "f32 dense [16, 24]", "int8 dense [8, 3, 3, 4] per channel (axis 0)", ...
inline std::string describe(const qpr::tensor_info& t) {
  std::string s = std::string(qpr::to_string(t.type)) + " " + std::string(qpr::to_string(t.enc)) + " [";
  for (std::size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  s += "]";
  if (t.quant == qpr::granularity::tensor) s += " per tensor";
  if (t.quant == qpr::granularity::channel) s += " per channel (axis " + std::to_string(t.axis) + ")";
  if (t.quant == qpr::granularity::group) {
    s += " per group of " + std::to_string(t.group_size) + " (axis " + std::to_string(t.axis) + ")";
  }
  return s;
}

inline std::string shape_text(const std::vector<index_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// Tensor lookups by role ("weight", "bias", ...) through an entry's "tensors" object.
class tensor_reader {
 public:
  tensor_reader(const qpr::file& f, const context& c, const json& entry) : f_(f), c_(c), entry_(entry) {}

  /// The tensor named by tensors[role]; nullopt when `optional` and the role is
  /// absent or null. Fails for a missing role, a name the file lacks, or a
  /// payload that does not verify.
  std::optional<qpr::tensor_ref> get(std::string_view role, bool optional = false) const {
    const json& ts = c_.member(entry_, "tensors");
    if (!ts.is_object()) c_.fail("\"tensors\" is " + short_dump(ts) + " (expected an object of tensor names)");
    const auto it = ts.find(role);
    if (it == ts.end() || it->is_null()) {
      if (optional) return std::nullopt;
      c_.fail("names no \"" + std::string(role) + "\" tensor (expected \"tensors\": {\"" + std::string(role) +
              "\": <name>})");
    }
    if (!it->is_string()) {
      c_.fail("tensor \"" + std::string(role) + "\" is " + short_dump(*it) + " (expected a tensor name)");
    }
    const std::string name = it->get<std::string>();
    if (f_.find(name) == nullptr) {
      c_.fail("its " + std::string(role) + " tensor '" + name + "' is not in the file (expected a tensor of that name)");
    }
    try {
      return f_.tensor(name);
    } catch (const qprune::error& e) {
      c_.fail(plain(e));
    }
  }

  /// Fails unless `r` is a dense tensor of dtype `t`, without quantization, of the given shape.
  void expect(const qpr::tensor_ref& r, qpr::dtype t, const std::vector<index_t>& shape) const {
    const qpr::tensor_info& i = *r.info;
    if (i.type != t || i.enc != qpr::encoding::dense || i.quant != qpr::granularity::none || i.shape != shape) {
      c_.fail("tensor '" + i.name + "' is " + describe(i) + " (expected " + std::string(qpr::to_string(t)) +
              " dense " + shape_text(shape) + " without quantization)");
    }
  }

  /// Fails unless `r` holds int8 weights: dense int8 of the given shape, one
  /// scale per index of axis 0, zero points 0. Returns the scales.
  std::vector<float> expect_int8_weights(const qpr::tensor_ref& r, const std::vector<index_t>& shape) const {
    const qpr::tensor_info& i = *r.info;
    if (i.type != qpr::dtype::int8 || i.enc != qpr::encoding::dense || i.quant != qpr::granularity::channel ||
        i.axis != 0 || i.shape != shape) {
      c_.fail("tensor '" + i.name + "' is " + describe(i) + " (expected int8 dense " + shape_text(shape) +
              " per channel (axis 0))");
    }
    for (std::int32_t z : r.zero_points()) {
      if (z != 0) c_.fail("tensor '" + i.name + "' has a non-zero zero point (expected symmetric int8 weights)");
    }
    const auto sc = r.scales();
    return std::vector<float>(sc.begin(), sc.end());
  }

  /// The optional f32 bias of `n` values (empty vector when absent).
  std::vector<float> bias(index_t n) const {
    const auto b = get("bias", true);
    if (!b) return {};
    expect(*b, qpr::dtype::f32, {n});
    const auto v = b->values<float>();
    return std::vector<float>(v.begin(), v.end());
  }

 private:
  const qpr::file& f_;
  const context& c_;
  const json& entry_;
};

// ---------------------------------------------------------------------------
// Saving a deployed model
// ---------------------------------------------------------------------------

/// Tensor entries, their JSON names and the buffers of temporaries they point into.
class entry_sink {
 public:
  /// Adds `e` as "<index>.<role>", records the name under tensors[role].
  void add(std::size_t index, std::string_view role, qpr::tensor_entry e, json& tensors) {
    e.info.name = std::to_string(index) + "." + std::string(role);
    tensors[std::string(role)] = e.info.name;
    entries_.push_back(std::move(e));
  }
  /// As add(), after copying every section into storage the sink owns.
  void add_owned(std::size_t index, std::string_view role, qpr::tensor_entry e, json& tensors) {
    for (auto& s : e.sections) {
      if (s.empty()) continue;
      owned_.emplace_back(s.begin(), s.end());
      s = std::span<const std::byte>(owned_.back());
    }
    add(index, role, std::move(e), tensors);
  }
  void add_bias(std::size_t index, std::span<const float> bias, json& tensors) {
    if (bias.empty()) {
      tensors["bias"] = nullptr;
    } else {
      add(index, "bias", qpr::entry("", bias), tensors);
    }
  }
  const std::vector<qpr::tensor_entry>& entries() const noexcept { return entries_; }

 private:
  std::vector<qpr::tensor_entry> entries_;
  std::deque<std::vector<std::byte>> owned_;  // a deque keeps earlier buffers in place
};

inline json quant_json(const quant::affine_params& p) {
  return json{{"scale", static_cast<double>(p.scale)}, {"zero_point", p.zero_point}};
}

inline json geometry_json(const kernels::conv2d_geometry& g) {
  return json{{"in_h", g.in_h},           {"in_w", g.in_w},           {"in_c", g.in_c},
              {"out_c", g.out_c},         {"kernel_h", g.kernel_h},   {"kernel_w", g.kernel_w},
              {"stride_h", g.stride_h},   {"stride_w", g.stride_w},   {"pad_top", g.pad_top},
              {"pad_bottom", g.pad_bottom}, {"pad_left", g.pad_left}, {"pad_right", g.pad_right},
              {"dilation_h", g.dilation_h}, {"dilation_w", g.dilation_w}, {"groups", g.groups}};
}

/// OHWI shape of conv filters.
inline std::vector<index_t> filter_shape(const kernels::conv2d_geometry& g) {
  return {g.out_c, g.kernel_h, g.kernel_w, g.group_in_c()};
}

/// Int8 codes with per-channel (axis 0) scales, zero points 0; code range
/// [-127, 127], or [-128, 127] when a code is -128.
inline qpr::tensor_entry int8_entry(std::vector<index_t> shape, std::span<const std::int8_t> codes,
                                    std::span<const float> scales) {
  qpr::tensor_entry e;
  qpr::tensor_info& t = e.info;
  t.type = qpr::dtype::int8;
  t.shape = std::move(shape);
  t.quant = qpr::granularity::channel;
  t.axis = 0;
  t.param_count = static_cast<std::uint64_t>(scales.size());
  t.qmin = -127;
  for (std::int8_t q : codes) t.qmin = q == -128 ? -128 : t.qmin;
  t.qmax = 127;
  e.sections[0] = std::as_bytes(codes);
  e.sections[1] = std::as_bytes(scales);
  return e;
}

/// A dense float / half tensor over `data` with an explicit shape.
template <class T>
qpr::tensor_entry raw_entry(std::vector<index_t> shape, std::span<const T> data) {
  qpr::tensor_entry e;
  e.info.type = qpr::dtype_of<T>;
  e.info.shape = std::move(shape);
  e.sections[0] = std::as_bytes(data);
  return e;
}

template <class Op>
bool save_dense_like(const op& o, std::size_t i, json& j, entry_sink& sink) {
  const auto* d = dynamic_cast<const Op*>(&o);
  if (d == nullptr) return false;
  json& ts = j["tensors"] = json::object();
  if constexpr (std::same_as<Op, float_dense>) {
    j["relu"] = d->relu();
    sink.add(i, "weight", qpr::entry("", d->weight().cview()), ts);
    sink.add_bias(i, d->bias(), ts);
  } else if constexpr (std::same_as<Op, half_dense<half>> || std::same_as<Op, half_dense<bfloat16>>) {
    j["relu"] = d->relu();
    const auto w = d->weight();
    sink.add_owned(i, "weight", qpr::entry("", w.cview()), ts);
    sink.add_bias(i, d->bias(), ts);
  } else if constexpr (std::same_as<Op, int8_dense>) {
    const auto& st = d->stage();
    const auto& c = d->codes();
    j["relu"] = st.relu();
    sink.add(i, "weight",
             int8_entry({c.extent(0), c.extent(1)}, std::span<const std::int8_t>(c.data(), static_cast<std::size_t>(c.size())),
                        st.weight_scales()),
             ts);
    j["input_quant"] = quant_json(st.input());
    j["output_quant"] = st.emits_codes() ? quant_json(st.output()) : json(nullptr);
    sink.add_bias(i, st.float_bias(), ts);
  } else if constexpr (std::same_as<Op, dynamic_dense>) {
    j["relu"] = d->relu();
    const quant::dynamic_linear& l = d->linear();
    const auto c = l.weight_codes<std::int8_t>();
    for (std::int32_t z : l.weight_params().zero_points) {
      if (z != 0) throw config_error("cannot save op " + std::to_string(i) + " (dense.dynamic_int8): non-zero weight zero point");
    }
    sink.add(i, "weight",
             int8_entry({c.extent(0), c.extent(1)},
                        std::span<const std::int8_t>(c.data_handle(), static_cast<std::size_t>(c.size())),
                        l.weight_params().scales),
             ts);
    sink.add_bias(i, l.bias(), ts);
  } else {  // int4_dense, sparse_dense<Matrix>: the stored matrix itself
    j["relu"] = d->relu();
    const auto& w = d->weight();
    if constexpr (requires { w.col_index_bytes(); }) {
      // CSR: written as a bitmask when one bit per element costs less than the
      // column indices and row pointers (load_csr reads either encoding).
      const std::int64_t mask = (w.rows() * w.cols() + 7) / 8;
      const std::int64_t index = w.nnz() * w.col_index_bytes() + (w.rows() + 1) * w.row_ptr_bytes();
      if (mask < index) {
        std::vector<std::uint8_t> bits;
        sink.add_owned(i, "weight", qpr::bitmask_entry("", w, bits), ts);
      } else {
        sink.add(i, "weight", qpr::entry("", w), ts);
      }
    } else {
      sink.add(i, "weight", qpr::entry("", w), ts);
    }
    sink.add_bias(i, d->bias(), ts);
  }
  return true;
}

template <class Op>
bool save_conv_like(const op& o, std::size_t i, json& j, entry_sink& sink) {
  const auto* d = dynamic_cast<const Op*>(&o);
  if (d == nullptr) return false;
  json& ts = j["tensors"] = json::object();
  const kernels::conv2d_geometry& g = d->geometry();
  j["geometry"] = geometry_json(g);
  if constexpr (std::same_as<Op, float_conv>) {
    j["relu"] = d->relu();
    const auto& w = d->weight();
    sink.add(i, "weight", raw_entry<float>(filter_shape(g), std::span<const float>(w.data(), static_cast<std::size_t>(w.size()))), ts);
    sink.add_bias(i, d->bias(), ts);
  } else if constexpr (std::same_as<Op, int8_conv>) {
    const auto& st = d->stage();
    const auto& c = d->codes();
    j["relu"] = st.relu();
    sink.add(i, "weight",
             int8_entry(filter_shape(g), std::span<const std::int8_t>(c.data(), static_cast<std::size_t>(c.size())),
                        st.weight_scales()),
             ts);
    j["input_quant"] = quant_json(st.input());
    j["output_quant"] = st.emits_codes() ? quant_json(st.output()) : json(nullptr);
    sink.add_bias(i, st.float_bias(), ts);
  } else {  // half_conv<H>
    j["relu"] = d->relu();
    const auto w = d->weight();
    using H = typename std::remove_cvref_t<decltype(w)>::value_type;
    sink.add_owned(i, "weight", raw_entry<H>(filter_shape(g), std::span<const H>(w.data(), static_cast<std::size_t>(w.size()))), ts);
    sink.add_bias(i, d->bias(), ts);
  }
  return true;
}

/// The JSON entry of op i (adding its tensors to `sink`). Throws config_error for
/// an op class this file format does not know.
inline json save_op(const op& o, std::size_t i, entry_sink& sink) {
  json j = json::object();
  j["kind"] = o.kind();
  if (save_dense_like<float_dense>(o, i, j, sink) || save_dense_like<half_dense<half>>(o, i, j, sink) ||
      save_dense_like<half_dense<bfloat16>>(o, i, j, sink) || save_dense_like<int8_dense>(o, i, j, sink) ||
      save_dense_like<dynamic_dense>(o, i, j, sink) || save_dense_like<int4_dense>(o, i, j, sink) ||
      save_dense_like<sparse_dense<prune::csr_matrix<float>>>(o, i, j, sink) ||
      save_dense_like<sparse_dense<prune::csr_matrix<half>>>(o, i, j, sink) ||
      save_dense_like<sparse_dense<prune::csr_matrix<std::int8_t>>>(o, i, j, sink) ||
      save_dense_like<sparse_dense<prune::packed_nm_matrix<float>>>(o, i, j, sink) ||
      save_dense_like<sparse_dense<prune::packed_nm_matrix<half>>>(o, i, j, sink) ||
      save_dense_like<sparse_dense<prune::packed_nm_matrix<std::int8_t>>>(o, i, j, sink) ||
      save_conv_like<float_conv>(o, i, j, sink) || save_conv_like<half_conv<half>>(o, i, j, sink) ||
      save_conv_like<half_conv<bfloat16>>(o, i, j, sink) || save_conv_like<int8_conv>(o, i, j, sink)) {
    return j;
  }
  if (const auto* r = dynamic_cast<const relu_op*>(&o)) {
    const float cap = r->cap();
    if (std::isfinite(cap)) {
      j["cap"] = static_cast<double>(cap);
    } else if (!(cap > 0.0f)) {
      throw config_error("cannot save op " + std::to_string(i) + " (relu): cap " + std::to_string(cap) +
                         " (expected +inf or a finite value)");
    }
    return j;
  }
  if (const auto* p = dynamic_cast<const pool_op*>(&o)) {
    j["window"] = p->window();
    j["stride"] = p->stride();
    return j;
  }
  if (dynamic_cast<const flatten_op*>(&o) != nullptr) return j;
  if (const auto* a = dynamic_cast<const channel_affine_op*>(&o)) {
    json& ts = j["tensors"] = json::object();
    sink.add(i, "scale", qpr::entry("", a->scale()), ts);
    sink.add(i, "shift", qpr::entry("", a->shift()), ts);
    return j;
  }
  throw config_error("cannot save op " + std::to_string(i) + " ('" + o.kind() +
                     "'): it is not one of the op classes of nn/deployed.hpp the file format stores "
                     "(expected float_dense, half_dense, int8_dense, dynamic_dense, int4_dense, sparse_dense, "
                     "float_conv, half_conv, int8_conv, relu_op, pool_op, flatten_op or channel_affine_op)");
}

// ---------------------------------------------------------------------------
// Loading a deployed model
// ---------------------------------------------------------------------------

/// The activation shape between ops, as the loader walks them.
struct walk_shape {
  index_t h, w, c;
  [[nodiscard]] index_t features() const noexcept { return h * w * c; }  // bounded by max_features
};

/// Runs `f` (a constructor or library loader); rethrows qprune errors as
/// io_error with the op's context.
template <class F>
auto guarded(const context& c, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const io_error&) {
    throw;
  } catch (const qprune::error& e) {
    c.fail(plain(e));
  }
}

inline quant::affine_params read_quant(const context& c, const json& op, std::string_view key) {
  const json& q = c.member(op, key);
  if (!q.is_object()) c.fail("\"" + std::string(key) + "\" is " + short_dump(q) + " (expected {\"scale\", \"zero_point\"})");
  const float s = c.number(q, "scale");
  if (!(s > 0.0f) || !std::isfinite(1.0f / s)) {
    c.fail("\"" + std::string(key) + "\" has scale " + short_dump(q.at("scale")) + " (expected a finite float32 > 0)");
  }
  const auto z = static_cast<std::int32_t>(c.integer(q, "zero_point", 0, 255));
  return {s, z};
}

inline kernels::conv2d_geometry read_geometry(const context& c, const json& op) {
  const json& j = c.member(op, "geometry");
  kernels::conv2d_geometry g;
  g.batch = 1;
  const index_t mx = max_json_extent;
  g.in_h = c.integer(j, "in_h", 1, mx);
  g.in_w = c.integer(j, "in_w", 1, mx);
  g.in_c = c.integer(j, "in_c", 1, mx);
  g.out_c = c.integer(j, "out_c", 1, mx);
  g.kernel_h = c.integer(j, "kernel_h", 1, mx);
  g.kernel_w = c.integer(j, "kernel_w", 1, mx);
  g.stride_h = c.integer(j, "stride_h", 1, mx);
  g.stride_w = c.integer(j, "stride_w", 1, mx);
  g.pad_top = c.integer(j, "pad_top", 0, mx);
  g.pad_bottom = c.integer(j, "pad_bottom", 0, mx);
  g.pad_left = c.integer(j, "pad_left", 0, mx);
  g.pad_right = c.integer(j, "pad_right", 0, mx);
  g.dilation_h = c.integer(j, "dilation_h", 1, mx);
  g.dilation_w = c.integer(j, "dilation_w", 1, mx);
  g.groups = c.integer(j, "groups", 1, mx);
  guarded(c, [&] { g.validate(); });
  return g;
}

/// Fails unless a Dense op with weights [out, in] fits the current activation
/// and has at least one output.
inline void check_dense_input(const context& c, const walk_shape& s, index_t out, index_t in) {
  if (out < 1) c.fail("its weights have " + std::to_string(out) + " outputs (expected at least 1)");
  if (s.features() != in) {
    c.fail("its weights take " + std::to_string(in) + " input features but the previous op produces " +
           std::to_string(s.features()) + " (" + std::to_string(s.h) + " x " + std::to_string(s.w) + " x " +
           std::to_string(s.c) + ")");
  }
}

/// Sets the walk to g's output after checking that g takes the current activation.
inline void advance_conv(const context& c, walk_shape& s, const kernels::conv2d_geometry& g) {
  if (g.in_h != s.h || g.in_w != s.w || g.in_c != s.c) {
    c.fail("its geometry takes " + std::to_string(g.in_h) + " x " + std::to_string(g.in_w) + " x " +
           std::to_string(g.in_c) + " inputs but the previous op produces " + std::to_string(s.h) + " x " +
           std::to_string(s.w) + " x " + std::to_string(s.c));
  }
  if (!checked_product({g.out_h(), g.out_w(), g.out_c}, max_features)) {
    c.fail("its output " + std::to_string(g.out_h()) + " x " + std::to_string(g.out_w()) + " x " +
           std::to_string(g.out_c) + " is too large (expected at most 2^40 features per sample)");
  }
  s = {g.out_h(), g.out_w(), g.out_c};
}

/// Dense weights [out, in] of a sparse kind, rebuilt exactly.
template <class Matrix>
std::unique_ptr<op> load_sparse(const context& c, const tensor_reader& t, walk_shape& s, bool relu) {
  using V = std::remove_cvref_t<decltype(std::declval<const Matrix&>().values()[0])>;
  const qpr::tensor_ref w = *t.get("weight");
  if (w.info->shape.size() != 2) c.fail("tensor '" + w.info->name + "' is " + describe(*w.info) + " (expected rank 2)");
  check_dense_input(c, s, w.info->shape[0], w.info->shape[1]);
  Matrix m = guarded(c, [&] {
    if constexpr (Matrix::format == prune::storage_format::csr) {
      return qpr::load_csr<V>(w);
    } else {
      return qpr::load_packed_nm<V>(w);
    }
  });
  const index_t out = m.rows();
  std::vector<float> b = t.bias(out);
  s = {1, 1, out};
  return guarded(c, [&] { return std::make_unique<sparse_dense<Matrix>>(std::move(m), std::move(b), relu); });
}

/// Dynamic int8 Dense: float weights rebuilt from the codes and scales so that
/// quant::dynamic_linear quantizes them back to exactly those codes and scales
/// (io::qpr's int8 row rebuild: w = s q, the row's largest |w| nudged until
/// max|w| / 127 == s); anything else is io_error.
inline std::unique_ptr<op> load_dynamic(const context& c, const tensor_reader& t, walk_shape& s, bool relu) {
  const qpr::tensor_ref w = *t.get("weight");
  if (w.info->shape.size() != 2) c.fail("tensor '" + w.info->name + "' is " + describe(*w.info) + " (expected rank 2)");
  const index_t out = w.info->shape[0], in = w.info->shape[1];
  const std::vector<float> scales = t.expect_int8_weights(w, {out, in});
  check_dense_input(c, s, out, in);
  const std::vector<float> b = t.bias(out);
  tensor<float, 2> wf(out, in);
  guarded(c, [&] { qpr::detail::rebuild_rows<std::int8_t>(w, wf.span()); });
  auto d = guarded(c, [&] { return std::make_unique<dynamic_dense>(wf.cview(), b, relu); });
  const auto got = d->linear().weight_codes<std::int8_t>();
  const auto want = w.values<std::int8_t>();
  const auto& gs = d->linear().weight_params().scales;
  if (!std::equal(want.begin(), want.end(), got.data_handle()) || !std::equal(gs.begin(), gs.end(), scales.begin())) {
    c.fail("tensor '" + w.info->name + "' is not what dynamic int8 quantization produces (expected per-row scales "
           "max|w| / 127 and codes in [-127, 127] reaching +-127 in every non-zero row)");
  }
  s = {1, 1, out};
  return d;
}

/// Reads the ops of a "qprune.deployed" JSON and their tensors.
inline deployed_model load_deployed(const qpr::file& f, const std::string& who) {
  const auto it = f.metadata().find(qpr::model_metadata_key);
  if (it == f.metadata().end()) {
    throw io_error(who + " has no '" + std::string(qpr::model_metadata_key) +
                   "' metadata (expected a model written by nn::save)");
  }
  const json root = parse_json(it->second, who);
  const context rc(who, "model");
  const std::string fmt = rc.string(root, "format");
  if (fmt != model_format_name) {
    rc.fail("\"format\" is \"" + fmt + "\" (expected \"" + std::string(model_format_name) + "\"" +
            (fmt == parameters_format_name ? "; this is a parameter file: use nn::load_parameters)" : ")"));
  }
  const index_t version = rc.integer(root, "version", 0, std::numeric_limits<std::int32_t>::max());
  if (version != model_format_version) {
    rc.fail("unsupported \"version\" " + std::to_string(version) + " (expected " +
            std::to_string(model_format_version) + ")");
  }
  const json& in = rc.member(root, "input");
  const context ic(who, "model input");
  walk_shape s{ic.integer(in, "height", 1, max_json_extent), ic.integer(in, "width", 1, max_json_extent),
               ic.integer(in, "channels", 1, max_json_extent)};
  if (!checked_product({s.h, s.w, s.c}, max_features)) ic.fail("is too large (expected at most 2^40 features)");
  deployed_model model(s.h, s.w, s.c);
  const json& ops = rc.member(root, "ops");
  if (!ops.is_array()) rc.fail("\"ops\" is " + short_dump(ops) + " (expected an array)");
  // Requantized outputs, applied once every op exists (emit_codes()).
  std::vector<std::pair<std::size_t, quant::affine_params>> emits;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const json& oj = ops[i];
    const context c0(who, "op " + std::to_string(i));
    const std::string kind = c0.string(oj, "kind");
    const context c(who, "op " + std::to_string(i) + " (" + kind + ")");
    const tensor_reader t(f, c, oj);
    std::unique_ptr<op> o;
    const auto relu = [&] { return c.boolean(oj, "relu"); };
    const auto output_quant = [&] {
      const json& q = c.member(oj, "output_quant");
      if (!q.is_null()) emits.emplace_back(i, read_quant(c, oj, "output_quant"));
    };
    if (kind == "dense.f32" || kind == "dense.f16" || kind == "dense.bf16" || kind == "dense.int8" ||
        kind == "dense.int4") {
      const bool r = relu();
      const qpr::tensor_ref w = *t.get("weight");
      if (w.info->shape.size() != 2) c.fail("tensor '" + w.info->name + "' is " + describe(*w.info) + " (expected rank 2)");
      const index_t out = w.info->shape[0], k = w.info->shape[1];
      if (kind == "dense.f32") {
        t.expect(w, qpr::dtype::f32, {out, k});
        check_dense_input(c, s, out, k);
        auto b = t.bias(out);
        o = guarded(c, [&] { return std::make_unique<float_dense>(qpr::load_tensor<float, 2>(w), std::move(b), r); });
      } else if (kind == "dense.f16" || kind == "dense.bf16") {
        const bool h16 = kind == "dense.f16";
        t.expect(w, h16 ? qpr::dtype::f16 : qpr::dtype::bf16, {out, k});
        check_dense_input(c, s, out, k);
        auto b = t.bias(out);
        tensor<float, 2> wf(out, k);
        qpr::dequantize(w, wf.span());  // exact widening
        o = guarded(c, [&]() -> std::unique_ptr<op> {
          if (h16) return std::make_unique<half_dense<half>>(wf.cview(), std::move(b), r);
          return std::make_unique<half_dense<bfloat16>>(wf.cview(), std::move(b), r);
        });
      } else if (kind == "dense.int8") {
        const std::vector<float> sc = t.expect_int8_weights(w, {out, k});
        check_dense_input(c, s, out, k);
        const auto b = t.bias(out);
        const quant::affine_params ip = read_quant(c, oj, "input_quant");
        output_quant();
        o = guarded(c, [&] { return std::make_unique<int8_dense>(w.view<std::int8_t, 2>(), sc, b, ip, r); });
      } else {
        const quant::packed_int4_matrix m = guarded(c, [&] { return qpr::load_packed_int4(w); });
        check_dense_input(c, s, out, k);
        auto b = t.bias(out);
        o = guarded(c, [&] { return std::make_unique<int4_dense>(m, std::move(b), r); });
      }
      s = {1, 1, out};
    } else if (kind == "dense.dynamic_int8") {
      o = load_dynamic(c, t, s, relu());
    } else if (kind == "dense.csr.fp32") {
      o = load_sparse<prune::csr_matrix<float>>(c, t, s, relu());
    } else if (kind == "dense.csr.fp16") {
      o = load_sparse<prune::csr_matrix<half>>(c, t, s, relu());
    } else if (kind == "dense.csr.int8") {
      o = load_sparse<prune::csr_matrix<std::int8_t>>(c, t, s, relu());
    } else if (kind == "dense.nm.fp32") {
      o = load_sparse<prune::packed_nm_matrix<float>>(c, t, s, relu());
    } else if (kind == "dense.nm.fp16") {
      o = load_sparse<prune::packed_nm_matrix<half>>(c, t, s, relu());
    } else if (kind == "dense.nm.int8") {
      o = load_sparse<prune::packed_nm_matrix<std::int8_t>>(c, t, s, relu());
    } else if (kind == "conv2d.f32" || kind == "conv2d.f16" || kind == "conv2d.bf16" || kind == "conv2d.int8") {
      const bool r = relu();
      const kernels::conv2d_geometry g = read_geometry(c, oj);
      const qpr::tensor_ref w = *t.get("weight");
      const std::vector<index_t> fs = filter_shape(g);
      // The tensor's shape is checked against the filter shape extent by extent
      // before anything multiplies the extents (g.patch()).
      if (kind == "conv2d.int8") {
        const std::vector<float> sc = t.expect_int8_weights(w, fs);
        advance_conv(c, s, g);
        const auto b = t.bias(g.out_c);
        const quant::affine_params ip = read_quant(c, oj, "input_quant");
        output_quant();
        const tensor_view<const std::int8_t, 2> codes(w.values<std::int8_t>().data(), g.out_c, g.patch());
        o = guarded(c, [&] { return std::make_unique<int8_conv>(g, codes, sc, b, ip, r); });
      } else {
        const qpr::dtype want = kind == "conv2d.f32" ? qpr::dtype::f32
                                : kind == "conv2d.f16" ? qpr::dtype::f16
                                                       : qpr::dtype::bf16;
        t.expect(w, want, fs);
        advance_conv(c, s, g);
        auto b = t.bias(g.out_c);
        tensor<float, 2> wf(g.out_c, g.patch());
        qpr::dequantize(w, wf.span());  // exact (f32 copy, f16 / bf16 widening)
        o = guarded(c, [&]() -> std::unique_ptr<op> {
          if (kind == "conv2d.f32") return std::make_unique<float_conv>(g, std::move(wf), std::move(b), r);
          if (kind == "conv2d.f16") return std::make_unique<half_conv<half>>(g, wf.cview(), std::move(b), r);
          return std::make_unique<half_conv<bfloat16>>(g, wf.cview(), std::move(b), r);
        });
      }
    } else if (kind == "relu" || kind == "relu6") {
      float cap = std::numeric_limits<float>::infinity();
      if (kind == "relu6") cap = c.number(oj, "cap");
      o = std::make_unique<relu_op>(cap);
    } else if (kind == "max_pool2d" || kind == "avg_pool2d") {
      const index_t k = c.integer(oj, "window", 1, max_json_extent);
      const index_t st = c.integer(oj, "stride", 1, max_json_extent);
      if (s.h < k || s.w < k) {
        c.fail("its window " + std::to_string(k) + " is larger than its input " + std::to_string(s.h) + " x " +
               std::to_string(s.w));
      }
      o = std::make_unique<pool_op>(kind == "max_pool2d" ? pool_op::kind_t::max : pool_op::kind_t::average, k, st);
      s = {(s.h - k) / st + 1, (s.w - k) / st + 1, s.c};
    } else if (kind == "flatten") {
      o = std::make_unique<flatten_op>();
      s = {1, 1, s.features()};
    } else if (kind == "batch_norm") {
      const qpr::tensor_ref sc = *t.get("scale");
      const qpr::tensor_ref sh = *t.get("shift");
      t.expect(sc, qpr::dtype::f32, {s.c});
      t.expect(sh, qpr::dtype::f32, {s.c});
      const auto a = sc.values<float>(), b = sh.values<float>();
      o = std::make_unique<channel_affine_op>(std::vector<float>(a.begin(), a.end()),
                                              std::vector<float>(b.begin(), b.end()));
    } else {
      c0.fail("has unknown kind \"" + kind +
              "\" (expected one of dense.f32 dense.f16 dense.bf16 dense.int8 dense.dynamic_int8 dense.int4 "
              "dense.csr.{fp32,fp16,int8} dense.nm.{fp32,fp16,int8} conv2d.{f32,f16,bf16,int8} relu relu6 "
              "max_pool2d avg_pool2d flatten batch_norm)");
    }
    model.add(std::move(o));
  }
  for (const auto& e : emits) {  // not a structured binding: clang 14 cannot capture one
    const context c(who, "op " + std::to_string(e.first) + " (" + model.ops()[e.first]->kind() + ")");
    guarded(c, [&] { static_cast<void>(model.ops()[e.first]->emit_codes(e.second)); });
  }
  return model;
}

// ---------------------------------------------------------------------------
// Parameter files (training state of a sequential)
// ---------------------------------------------------------------------------

/// Whether a prunable layer stores a mask (prune::mask) or none (prune::none).
template <class L>
constexpr bool has_mask() {
  using M = typename L::mask_type;
  if constexpr (nn::detail::is_all_kept_v<M>) {
    return false;
  } else {
    static_assert(std::same_as<M, prune::mask>,
                  "nn::save_parameters stores masks of type prune::mask (every shipped pruner); "
                  "this layer's pruner has another mask_type");
    return true;
  }
}

/// The activation policy's name; static_int8 is the only one with saved state.
template <class A>
std::string activation_name() {
  if constexpr (std::same_as<A, quant::none>) {
    return "none";
  } else if constexpr (std::same_as<A, quant::static_int8>) {
    return "static_int8";
  } else if constexpr (std::same_as<A, quant::dynamic_int8>) {
    return "dynamic_int8";
  } else {
    static_assert(!nn::detail::fake_quant_activation<A>,
                  "nn::save_parameters cannot save the observed range of this activation quantizer "
                  "(supported: quant::none, quant::static_int8, quant::dynamic_int8, and policies the "
                  "layers do not fake-quantize with)");
    return "other";
  }
}

template <class L>
void add_activation(json& j, const L& l) {
  using A = typename L::activation_quantizer_type;
  j["activation"] = activation_name<A>();
  if constexpr (std::same_as<A, quant::static_int8>) {
    j["activation_dtype"] = std::string(quant::to_string(l.activation_quantizer().type()));
  }
}

inline json pair_json(index_t a, index_t b) { return json::array({a, b}); }

/// A layer's architecture: what load_parameters compares with the network.
template <class L>
json describe_layer(const L& l) {
  json j = json::object();
  if constexpr (is_dense_v<L>) {
    j["kind"] = "dense";
    j["in_features"] = l.in_features();
    j["out_features"] = l.out_features();
    j["bias"] = l.options().use_bias;
    j["masked"] = has_mask<L>();
    add_activation(j, l);
  } else if constexpr (is_conv_v<L>) {
    const conv2d_options& o = l.options();
    j["kind"] = "conv2d";
    j["in_channels"] = o.in_channels;
    j["out_channels"] = o.out_channels;
    j["kernel"] = pair_json(o.kernel_h, o.kernel_w);
    j["stride"] = pair_json(o.stride_h, o.stride_w);
    if (const auto* m = std::get_if<kernels::padding_mode>(&o.padding)) {
      j["padding"] = *m == kernels::padding_mode::same ? "same" : "valid";
    } else {
      const auto& p = std::get<explicit_padding>(o.padding);
      j["padding"] = json::array({p.top, p.bottom, p.left, p.right});
    }
    j["dilation"] = pair_json(o.dilation_h, o.dilation_w);
    j["groups"] = o.groups;
    j["bias"] = o.use_bias;
    j["masked"] = has_mask<L>();
    add_activation(j, l);
  } else if constexpr (std::same_as<L, batch_norm>) {
    j["kind"] = "batch_norm";
    j["num_features"] = l.options().num_features;
    j["eps"] = l.options().eps;
  } else if constexpr (std::same_as<L, max_pool2d> || std::same_as<L, avg_pool2d>) {
    const pool2d_options& o = l.options();
    j["kind"] = std::same_as<L, max_pool2d> ? "max_pool2d" : "avg_pool2d";
    j["kernel"] = pair_json(o.kernel_h, o.kernel_w);
    j["stride"] = pair_json(o.stride_h, o.stride_w);
    j["padding"] = pair_json(o.pad_h, o.pad_w);
    if constexpr (std::same_as<L, avg_pool2d>) j["count_include_pad"] = l.count_include_pad();
  } else if constexpr (std::same_as<L, relu>) {
    j["kind"] = "relu";
  } else if constexpr (std::same_as<L, relu6>) {
    j["kind"] = "relu6";
  } else if constexpr (std::same_as<L, flatten>) {
    j["kind"] = "flatten";
  } else {
    static_assert(sizeof(L) == 0,
                  "nn::save_parameters / load_parameters: unsupported layer type (expected dense, conv2d, "
                  "batch_norm, relu, relu6, flatten, max_pool2d or avg_pool2d)");
  }
  return j;
}

/// The shape a parameter file gives a weight (and its mask): dense [out, in],
/// conv OHWI [out, kh, kw, in / groups].
template <class L>
std::vector<index_t> weight_shape(const L& l) {
  if constexpr (is_dense_v<L>) {
    return {l.out_features(), l.in_features()};
  } else {
    const conv2d_options& o = l.options();
    return {o.out_channels, o.kernel_h, o.kernel_w, o.in_channels / o.groups};
  }
}

template <class L>
void save_layer(std::size_t i, const L& l, json& layers, entry_sink& sink) {
  json j = describe_layer(l);
  json& ts = j["tensors"] = json::object();
  if constexpr (is_dense_v<L> || is_conv_v<L>) {
    const auto& w = l.weight();
    sink.add(i, "weight", raw_entry<float>(weight_shape(l), std::span<const float>(w.data(), static_cast<std::size_t>(w.size()))), ts);
    if (l.options().use_bias) sink.add(i, "bias", qpr::entry("", l.bias().cview()), ts);
    if constexpr (has_mask<L>()) {
      const prune::mask& m = l.mask();
      sink.add(i, "mask", raw_entry<std::uint8_t>(weight_shape(l), m.span()), ts);
    }
    if constexpr (std::same_as<typename L::activation_quantizer_type, quant::static_int8>) {
      const quant::static_int8& a = l.activation_quantizer();
      j["calibrated"] = a.calibrated();
      if (a.calibrated()) {
        const float r[2] = {a.observer().min(), a.observer().max()};
        sink.add_owned(i, "input_range", qpr::entry("", std::span<const float>(r, 2)), ts);
      }
    }
  } else if constexpr (std::same_as<L, batch_norm>) {
    sink.add(i, "gamma", qpr::entry("", l.gamma().cview()), ts);
    sink.add(i, "beta", qpr::entry("", l.beta().cview()), ts);
    sink.add(i, "running_mean", qpr::entry("", l.running_mean().cview()), ts);
    sink.add(i, "running_var", qpr::entry("", l.running_var().cview()), ts);
  }
  layers.push_back(std::move(j));
}

/// What load_parameters copies into one layer, gathered and checked first.
struct layer_plan {
  std::optional<qpr::tensor_ref> weight, bias, mask, gamma, beta, running_mean, running_var, input_range;
  bool calibrated = false;
};

template <class L>
layer_plan check_layer(const qpr::file& f, const std::string& who, std::size_t i, const json& fj, const L& l) {
  const json want = describe_layer(l);
  const context c(who, "layer " + std::to_string(i));
  if (!fj.is_object()) c.fail("is " + short_dump(fj) + " (expected a JSON object)");
  const std::string fk = c.string(fj, "kind");
  const std::string nk = want["kind"].get<std::string>();
  if (fk != nk) c.fail("is a " + fk + " layer in the file and a " + nk + " layer in the network (expected the same architecture)");
  const context lc(who, "layer " + std::to_string(i) + " (" + nk + ")");
  for (const auto& [key, v] : want.items()) {
    const auto it = fj.find(key);
    if (it == fj.end()) lc.fail("has no \"" + key + "\" in the file (expected " + short_dump(v) + ", as in the network)");
    if (*it != v) {
      lc.fail("\"" + key + "\" is " + short_dump(*it) + " in the file and " + short_dump(v) +
              " in the network (expected the same architecture)");
    }
  }
  const tensor_reader t(f, lc, fj);
  layer_plan p;
  if constexpr (is_dense_v<L> || is_conv_v<L>) {
    const std::vector<index_t> ws = weight_shape(l);
    p.weight = t.get("weight");
    t.expect(*p.weight, qpr::dtype::f32, ws);
    if (l.options().use_bias) {
      p.bias = t.get("bias");
      t.expect(*p.bias, qpr::dtype::f32, {ws[0]});
    }
    if constexpr (has_mask<L>()) {
      p.mask = t.get("mask");
      t.expect(*p.mask, qpr::dtype::uint8, ws);
      for (std::uint8_t b : p.mask->values<std::uint8_t>()) {
        if (b > 1) lc.fail("tensor '" + p.mask->info->name + "' holds the value " + std::to_string(b) + " (expected 0 or 1)");
      }
    }
    if constexpr (std::same_as<typename L::activation_quantizer_type, quant::static_int8>) {
      p.calibrated = lc.boolean(fj, "calibrated");
      if (p.calibrated) {
        p.input_range = t.get("input_range");
        t.expect(*p.input_range, qpr::dtype::f32, {2});
        const auto r = p.input_range->values<float>();
        if (!(std::isfinite(r[0]) && std::isfinite(r[1]) && r[0] <= r[1])) {
          lc.fail("tensor '" + p.input_range->info->name + "' is not a finite range [min, max] (expected min <= max)");
        }
      }
    }
  } else if constexpr (std::same_as<L, batch_norm>) {
    const std::vector<index_t> cs{l.options().num_features};
    p.gamma = t.get("gamma");
    p.beta = t.get("beta");
    p.running_mean = t.get("running_mean");
    p.running_var = t.get("running_var");
    for (const auto* r : {&p.gamma, &p.beta, &p.running_mean, &p.running_var}) t.expect(**r, qpr::dtype::f32, cs);
  }
  return p;
}

template <class T, std::size_t R>
void copy_into(const qpr::tensor_ref& r, tensor<T, R>& dst) {
  const auto v = r.values<T>();
  std::copy(v.begin(), v.end(), dst.data());
}

template <class L>
void apply_layer(const layer_plan& p, L& l) {
  if constexpr (is_dense_v<L> || is_conv_v<L>) {
    if constexpr (has_mask<L>()) {
      const auto& w = l.weight();
      const auto m = p.mask->values<std::uint8_t>();
      // The mask first (it zeroes the current weights), then the saved weights as they were.
      l.weights().set_mask(prune::mask::from_values(w.extents(), m));
    }
    copy_into(*p.weight, l.weight());
    if (p.bias) copy_into(*p.bias, l.bias());
    if constexpr (std::same_as<typename L::activation_quantizer_type, quant::static_int8>) {
      quant::static_int8& a = l.activation_quantizer();
      a = quant::static_int8(a.type(), a.observer().averaging_constant());
      if (p.calibrated) {
        // The first observed batch sets min and max exactly (moving_average_minmax_observer).
        const auto r = p.input_range->values<float>();
        a.observe(tensor_view<const float, 1>(r.data(), 2));
      }
    }
  } else if constexpr (std::same_as<L, batch_norm>) {
    copy_into(*p.gamma, l.gamma());
    copy_into(*p.beta, l.beta());
    copy_into(*p.running_mean, l.running_mean());
    copy_into(*p.running_var, l.running_var());
  } else {
    static_cast<void>(p);
    static_cast<void>(l);
  }
}

template <class... L, std::size_t... I>
void save_parameters_impl(const sequential<L...>& net, json& layers, entry_sink& sink, std::index_sequence<I...>) {
  (save_layer(I, net.template get<I>(), layers, sink), ...);
}

template <class... L, std::size_t... I>
void load_parameters_impl(const qpr::file& f, const std::string& who, const json& layers, sequential<L...>& net,
                          std::index_sequence<I...>) {
  // Everything is checked before the network changes.
  const std::array<layer_plan, sizeof...(L)> plans{
      check_layer(f, who, I, layers[I], std::as_const(net).template get<I>())...};
  (apply_layer(plans[I], net.template get<I>()), ...);
}

}  // namespace detail::model_file

/// Saves a deployed model to `path` atomically (io::qpr::save): each op's
/// weights as tensors "<op index>.<role>" in their deployed form (int8 codes 1
/// byte per weight with float32 per-channel scales; packed int4 with group
/// parameters; fp16 / bf16; CSR or packed N:M; float32 otherwise; biases
/// float32) and one metadata entry "qprune.model", the JSON op list
/// (doc/format.md, "Models"). The file size is the model's compressed size.
/// Throws config_error for an op of a class the format does not store (an op
/// type defined outside nn/deployed.hpp), io_error when the file cannot be written.
inline void save(const deployed_model& model, const std::filesystem::path& path,
                 const io::qpr::save_options& opt = {}) {
  using json = detail::model_file::json;
  detail::model_file::entry_sink sink;
  json ops = json::array();
  for (std::size_t i = 0; i < model.ops().size(); ++i) ops.push_back(detail::model_file::save_op(*model.ops()[i], i, sink));
  const json root{{"format", std::string(model_format_name)},
                  {"version", model_format_version},
                  {"input",
                   {{"height", model.input_height()}, {"width", model.input_width()}, {"channels", model.input_channels()}}},
                  {"ops", std::move(ops)}};
  io::qpr::metadata_map meta;
  meta.emplace(std::string(io::qpr::model_metadata_key), root.dump());
  io::qpr::save(path, sink.entries(), meta, opt);
}

/// Loads a model written by save() from an opened file: the ops, built from the
/// stored weights by the same constructors, give bit-identical forward results
/// (requantizing int8 outputs are restored as saved, not recomputed).
/// Validates the metadata (present, valid JSON, format "qprune.deployed",
/// version 1, known op kinds, required fields and their ranges), each
/// referenced tensor (present, payload checksum, dtype, encoding, shape,
/// quantization layout) and the shapes between consecutive ops. Throws io_error
/// naming the file, the op and the problem; never reads out of bounds.
/// Tensors no op names are ignored.
[[nodiscard]] inline deployed_model load_model(const io::qpr::file& f) {
  return detail::model_file::load_deployed(f, "model file");
}

/// Opens `path` (io::qpr::load) and loads the model it holds. Throws io_error
/// as io::qpr::load and load_model(const file&).
[[nodiscard]] inline deployed_model load_model(const std::filesystem::path& path) {
  const io::qpr::file f = io::qpr::load(path);
  std::string who(1, '\'');
  who.append(path.string()).append(1, '\'');
  return detail::model_file::load_deployed(f, who);
}

/// Saves the training state of `net` to `path` atomically: for every layer i,
/// "<i>.weight" (dense [out, in], conv OHWI [out, kh, kw, in / groups]),
/// "<i>.bias", "<i>.mask" (uint8 0/1, weight's shape, prunable layers),
/// "<i>.input_range" (float32 [min, max] a calibrated quant::static_int8 has
/// observed), batch norm "<i>.gamma", "<i>.beta", "<i>.running_mean",
/// "<i>.running_var"; all float32 except masks, plus "qprune.model", a JSON of
/// the layer kinds and shapes (format "qprune.parameters"). Gradients,
/// optimizer state and pruner targets are not saved.
/// Throws io_error when the file cannot be written. Unsupported layer or policy
/// types are a compile-time error naming what is supported.
template <class... L>
void save_parameters(const std::filesystem::path& path, const sequential<L...>& net,
                     const io::qpr::save_options& opt = {}) {
  using json = detail::model_file::json;
  detail::model_file::entry_sink sink;
  json layers = json::array();
  detail::model_file::save_parameters_impl(net, layers, sink, std::index_sequence_for<L...>{});
  const json root{{"format", std::string(parameters_format_name)},
                  {"version", parameters_format_version},
                  {"layers", std::move(layers)}};
  io::qpr::metadata_map meta;
  meta.emplace(std::string(io::qpr::model_metadata_key), root.dump());
  io::qpr::save(path, sink.entries(), meta, opt);
}

/// Loads a file written by save_parameters into `net`, which must have the same
/// architecture: the same number of layers, and per layer the same kind, sizes,
/// kernel / stride / padding / dilation / groups, bias and mask presence,
/// activation policy, batch-norm eps and pooling settings. Copies the weights,
/// biases, masks (set_mask, then the weights exactly as saved), batch-norm
/// parameters and running statistics, and a static_int8 input range (the
/// quantizer is reset to its type and averaging constant, then observes the
/// two values [min, max], which sets them exactly); so the eval-mode forward
/// of `net` equals that of the saved network bit for bit.
/// Throws io_error naming the layer and the difference for another
/// architecture, and for missing or mis-shaped tensors, non-binary masks or
/// invalid JSON; everything is checked before `net` changes, so on an error
/// `net` is unchanged.
template <class... L>
void load_parameters(const std::filesystem::path& path, sequential<L...>& net) {
  namespace mf = detail::model_file;
  const io::qpr::file f = io::qpr::load(path);
  std::string who(1, '\'');
  who.append(path.string()).append(1, '\'');
  const auto it = f.metadata().find(io::qpr::model_metadata_key);
  if (it == f.metadata().end()) {
    throw io_error(who + " has no '" + std::string(io::qpr::model_metadata_key) +
                   "' metadata (expected a parameter file written by nn::save_parameters)");
  }
  const mf::json root = mf::parse_json(it->second, who);
  const mf::context c(who, "parameters");
  const std::string fmt = c.string(root, "format");
  if (fmt != parameters_format_name) {
    c.fail("\"format\" is \"" + fmt + "\" (expected \"" + std::string(parameters_format_name) + "\"" +
           (fmt == model_format_name ? "; this is a deployed model: use nn::load_model)" : ")"));
  }
  const index_t version = c.integer(root, "version", 0, std::numeric_limits<std::int32_t>::max());
  if (version != parameters_format_version) {
    c.fail("unsupported \"version\" " + std::to_string(version) + " (expected " +
           std::to_string(parameters_format_version) + ")");
  }
  const mf::json& layers = c.member(root, "layers");
  if (!layers.is_array()) c.fail("\"layers\" is " + mf::short_dump(layers) + " (expected an array)");
  if (layers.size() != sizeof...(L)) {
    c.fail("the file has " + std::to_string(layers.size()) + " layers and the network " +
           std::to_string(sizeof...(L)) + " (expected the same architecture)");
  }
  mf::load_parameters_impl(f, who, layers, net, std::index_sequence_for<L...>{});
}

}  // namespace qprune::nn
