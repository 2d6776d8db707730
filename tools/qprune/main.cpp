// The `qprune` command-line tool: inspect .qpr/.npz/.npy/.safetensors files,
// compress float weights into a .qpr file (fp16/bf16/int8/int4, pruning, sparse
// storage) with the library's quant/ and prune/ functions, and decompress a .qpr
// file back to .npz/.safetensors. Exit codes: 0 ok, 1 bad input, 2 usage.
// Usage and options: doc/cli.md (README "Command-line tool").
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "qprune/core/half.hpp"
#include "qprune/io/array.hpp"
#include "qprune/io/checksum.hpp"
#include "qprune/io/format.hpp"
#include "qprune/io/npy.hpp"
#include "qprune/io/npz.hpp"
#include "qprune/io/safetensors.hpp"
#include "qprune/kernels/convert.hpp"
#include "qprune/kernels/quantize.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/n_m.hpp"
#include "qprune/prune/report.hpp"
#include "qprune/prune/sparse_storage.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/int8.hpp"
#include "qprune/quant/observers.hpp"
#include "qprune/quant/qparams.hpp"
#include "qprune/quant/quantize.hpp"
#include "qprune/quant/report.hpp"

namespace {

namespace fs = std::filesystem;
namespace qpr = qprune::io::qpr;
namespace io = qprune::io;
namespace quant = qprune::quant;
namespace prune = qprune::prune;
using qprune::index_t;

constexpr const char* usage_text =
    "usage: qprune inspect FILE [--verify]\n"
    "       qprune compress IN -o OUT.qpr [--dtype fp16|bf16|int8|int4]\n"
    "              [--granularity tensor|channel|group:N] [--axis N] [--scheme symmetric|affine]\n"
    "              [--observer minmax|mse|percentile:P] [--compat qprune|pytorch|tensorflow|onnxruntime]\n"
    "              [--prune magnitude:S|global:S|nm:N:M|channel:S] [--skip REGEX] [--report] [--progress]\n"
    "       qprune decompress IN.qpr -o OUT.npz|OUT.safetensors [--raw] [--progress]\n"
    "FILE / IN: .qpr, .npz, .npy or .safetensors. Exit codes: 0 ok, 1 bad input, 2 usage.\n";

/// A command-line mistake: prints the message and the usage, exit code 2.
struct usage_error {
  std::string what;
};

[[noreturn]] void usage_fail(std::string m) { throw usage_error{std::move(m)}; }

std::string ext_of(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e;
}

std::string shape_str(const std::vector<index_t>& s) {
  std::string o = "[";
  for (std::size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int k = 0;
  while (b >= 1024.0 && k < 4) {
    b /= 1024.0;
    ++k;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, k == 0 ? "%.0f %s" : "%.2f %s", b, u[k]);
  return buf;
}

/// A progress bar on stderr, drawn only when enabled (a tty or --progress) and the
/// work is large (>= 64 MiB) or forced.
class progress_bar {
 public:
  progress_bar(bool forced, std::uint64_t total, std::string label)
      : on_((forced || ::isatty(2)) && (forced || total >= (std::uint64_t{64} << 20))), total_(total),
        label_(std::move(label)) {}
  ~progress_bar() { finish(); }
  void update(std::uint64_t done) {
    if (!on_ || total_ == 0) return;
    const int pct = static_cast<int>(std::min<std::uint64_t>(100, done * 100 / total_));
    if (pct == last_) return;
    last_ = pct;
    const int w = 30, fill = pct * w / 100;
    std::fprintf(stderr, "\r%s [%.*s%*s] %3d%%", label_.c_str(), fill, "##############################", w - fill, "",
                 pct);
    std::fflush(stderr);
  }
  void finish() {
    if (on_ && last_ >= 0) {
      std::fprintf(stderr, "\n");
      last_ = -1;
    }
    on_ = false;
  }

 private:
  bool on_;
  std::uint64_t total_;
  std::string label_;
  int last_ = -1;
};

// ---------------------------------------------------------------------------
// Reading the interchange formats
// ---------------------------------------------------------------------------

struct input_file {
  std::vector<io::array> arrays;
  std::map<std::string, std::string> metadata;
  std::string checksum_note;
};

input_file read_input(const fs::path& p) {
  const std::string e = ext_of(p);
  input_file in;
  if (e == ".npz") {
    in.arrays = io::read_npz(p);
    in.checksum_note = "CRC-32 of every member verified";
  } else if (e == ".npy") {
    in.arrays.push_back(io::read_npy(p));
    in.checksum_note = "none (.npy has no checksum)";
  } else if (e == ".safetensors") {
    io::safetensors_file f = io::read_safetensors(p);
    in.arrays = std::move(f.tensors);
    in.metadata = std::move(f.metadata);
    in.checksum_note = "none (safetensors has no checksum)";
  } else {
    throw qprune::io_error("'" + p.string() + "' has an unknown extension '" + e +
                           "' (expected .qpr, .npz, .npy or .safetensors)");
  }
  return in;
}

/// The arrays of an input file. A .npz archive is read member by member
/// (load(i) parses and CRC-checks one member, release(i) drops its pages from
/// memory), so compressing holds one member at a time instead of the archive;
/// the other formats are read whole (their arrays view the mapped file).
class input_source {
 public:
  explicit input_source(const fs::path& p) : path_(p) {
    if (ext_of(p) != ".npz") {
      in_ = read_input(p);
      return;
    }
    map_ = std::make_shared<io::mapped_file>(io::mapped_file::open(p));
    source_ = "'" + p.string() + "'";
    members_ = io::detail::parse_zip_directory(map_->bytes(), source_);
    std::map<std::string, int> names;
    for (const io::detail::zip_member& m : members_) {
      const std::string what = source_ + " member '" + m.name + "'";
      if (m.name.size() < 5 || m.name.compare(m.name.size() - 4, 4, ".npy") != 0) {
        throw qprune::io_error(what + " is not a .npy file (expected only NAME.npy members)");
      }
      if (!names.emplace(m.name, 0).second) {
        throw qprune::io_error(source_ + " has two members named '" + m.name + "' (expected unique names)");
      }
    }
  }
  [[nodiscard]] std::size_t size() const noexcept { return map_ ? members_.size() : in_.arrays.size(); }
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return in_.metadata; }
  /// Bytes of array data (uncompressed), for progress and throughput.
  [[nodiscard]] std::uint64_t data_bytes() const noexcept {
    std::uint64_t n = 0;
    if (map_) {
      for (const auto& m : members_) n += m.uncompressed;
    } else {
      for (const auto& a : in_.arrays) n += a.bytes().size();
    }
    return n;
  }
  /// Array i (a .npz member is parsed and its CRC-32 checked now). Throws io_error.
  /// Unless `owned`, the array may view a scratch buffer that the next load() overwrites.
  [[nodiscard]] io::array load(std::size_t i, bool owned = false) const {
    if (!map_) return in_.arrays[i];
    const io::detail::zip_member& m = members_[i];
    const std::string what = source_ + " member '" + m.name + "'";
    const auto raw = map_->bytes().subspan(static_cast<std::size_t>(m.data_offset), static_cast<std::size_t>(m.compressed));
    std::span<const std::byte> data = raw;
    std::shared_ptr<const void> keep = map_;
    if (m.method == 8) {
      auto buf = io::detail::inflate_member(raw, static_cast<std::size_t>(m.uncompressed), what);
      data = std::span<const std::byte>(buf->data(), static_cast<std::size_t>(m.uncompressed));
      keep = std::move(buf);
    }
    if (io::crc32(data) != m.crc) {
      throw qprune::io_error(what + " has a CRC-32 mismatch (expected " + std::to_string(m.crc) + " from the central directory)");
    }
    const io::npy_header h = io::parse_npy_header(data, what);
    const auto body = data.subspan(std::min(h.data_offset, data.size()));
    if (!owned && !h.big_endian && reinterpret_cast<std::uintptr_t>(body.data()) % io::dtype_size(h.type) != 0) {
      // zip members are not aligned: reuse one scratch buffer instead of a fresh
      // copy per member (the array does not own it: valid until the next load()).
      if (scratch_->size() < body.size()) *scratch_ = qprune::aligned_vector<std::byte>(body.size());
      std::memcpy(scratch_->data(), body.data(), body.size());
      return io::array::view(m.name.substr(0, m.name.size() - 4), h.type, h.shape, h.order,
                             std::span<const std::byte>(scratch_->data(), body.size()));
    }
    return io::read_npy(data, what, m.name.substr(0, m.name.size() - 4), std::move(keep));
  }
  /// Lets the kernel drop member i's mapped pages (they are re-read from the file
  /// if something still views them).
  void release(std::size_t i) const noexcept {
    if (!map_ || !map_->is_mapped()) return;
    const io::detail::zip_member& m = members_[i];
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<std::uintptr_t>(map_->bytes().data() + m.data_offset);
    const std::uintptr_t end = begin + m.compressed;
    const std::uintptr_t b = (begin + page - 1) / page * page, e = end / page * page;
    if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
  }

 private:
  fs::path path_;
  input_file in_;
  std::shared_ptr<io::mapped_file> map_;
  std::string source_;
  std::vector<io::detail::zip_member> members_;
  std::shared_ptr<qprune::aligned_vector<std::byte>> scratch_ = std::make_shared<qprune::aligned_vector<std::byte>>();
};

bool is_float_dtype(io::dtype t) {
  return t == io::dtype::f16 || t == io::dtype::bf16 || t == io::dtype::f32 || t == io::dtype::f64;
}

// ---------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------

std::string encoding_str(const qpr::tensor_info& t) {
  std::string s(qpr::to_string(t.enc));
  if (t.enc == qpr::encoding::nm) s += " " + std::to_string(t.nm_n) + ":" + std::to_string(t.nm_m);
  return s;
}
std::string quant_str(const qpr::tensor_info& t) {
  switch (t.quant) {
    case qpr::granularity::none: return "-";
    case qpr::granularity::tensor: return "tensor";
    case qpr::granularity::channel: return "channel(axis " + std::to_string(t.axis) + ")";
    case qpr::granularity::group:
      return "group(axis " + std::to_string(t.axis) + ", " + std::to_string(t.group_size) + ")";
  }
  return "?";
}

int cmd_inspect(const std::vector<std::string>& args) {
  std::optional<fs::path> file;
  bool verify = false;
  for (const std::string& a : args) {
    if (a == "--verify") verify = true;
    else if (!a.empty() && a[0] == '-') usage_fail("unknown option '" + a + "' for inspect");
    else if (file) usage_fail("inspect takes one FILE");
    else file = a;
  }
  if (!file) usage_fail("inspect needs a FILE");
  const std::string e = ext_of(*file);
  std::printf("%-40s %-6s %-20s %-10s %-22s %9s %12s\n", "name", "dtype", "shape", "encoding", "quantization",
              "sparsity", "bytes");
  if (e == ".qpr") {
    const qpr::file f = qpr::load(*file);
    std::uint64_t elements = 0, bytes = 0;
    for (const qpr::tensor_info& t : f.tensors()) {
      std::printf("%-40s %-6s %-20s %-10s %-22s %8.2f%% %12llu\n", t.name.c_str(),
                  std::string(qpr::to_string(t.type)).c_str(), shape_str(t.shape).c_str(), encoding_str(t).c_str(),
                  quant_str(t).c_str(), 100.0 * t.sparsity(), static_cast<unsigned long long>(t.length));
      elements += t.element_count();
      bytes += t.length;
    }
    std::printf("total: %zu tensors, %llu elements, %llu payload bytes (%s), file %llu bytes, %zu metadata entries\n",
                f.tensors().size(), static_cast<unsigned long long>(elements), static_cast<unsigned long long>(bytes),
                human_bytes(static_cast<double>(bytes)).c_str(), static_cast<unsigned long long>(f.file_bytes()),
                f.metadata().size());
    for (const auto& [k, v] : f.metadata()) {
      std::printf("metadata: %s = %s\n", k.c_str(), v.size() > 200 ? (v.substr(0, 200) + "...").c_str() : v.c_str());
    }
    if (verify) {
      f.verify_all();
      std::printf("checksums: header ok; %zu tensor payloads ok\n", f.tensors().size());
    } else {
      std::printf("checksums: header ok; tensor payloads not read (use --verify)\n");
    }
    return 0;
  }
  const input_file in = read_input(*file);
  std::uint64_t elements = 0, bytes = 0;
  for (const io::array& a : in.arrays) {
    double sparsity = 0.0;
    if (io::converts_to_float(a.type()) && a.size() > 0) {
      const std::vector<float> v = a.to_float();
      const auto zeros = std::count(v.begin(), v.end(), 0.0f);
      sparsity = static_cast<double>(zeros) / static_cast<double>(v.size());
    }
    std::printf("%-40s %-6s %-20s %-10s %-22s %8.2f%% %12zu\n", a.name().c_str(),
                std::string(io::to_string(a.type())).c_str(), shape_str(a.shape()).c_str(), "dense", "-",
                100.0 * sparsity, a.bytes().size());
    elements += static_cast<std::uint64_t>(a.size());
    bytes += a.bytes().size();
  }
  std::printf("total: %zu tensors, %llu elements, %llu data bytes (%s), file %llu bytes\n", in.arrays.size(),
              static_cast<unsigned long long>(elements), static_cast<unsigned long long>(bytes),
              human_bytes(static_cast<double>(bytes)).c_str(),
              static_cast<unsigned long long>(fs::file_size(*file)));
  std::printf("checksums: %s\n", in.checksum_note.c_str());
  return 0;
}

// ---------------------------------------------------------------------------
// compress
// ---------------------------------------------------------------------------

enum class out_dtype { f32, fp16, bf16, int8, int4 };
enum class gran { unset, tensor, channel, group };
enum class compat { qprune, pytorch, tensorflow, onnxruntime };
enum class observer { minmax, mse, percentile };
enum class prune_kind { none, magnitude, global, nm, channel };

struct compress_options {
  fs::path in, out;
  out_dtype type = out_dtype::f32;
  gran granularity = gran::unset;
  index_t group_size = 0;
  std::optional<index_t> axis;
  quant::scheme scheme = quant::scheme::symmetric;
  observer obs = observer::minmax;
  double percentile = 99.99;
  compat mode = compat::qprune;
  prune_kind pk = prune_kind::none;
  float sparsity = 0.0f;
  int nm_n = 0, nm_m = 0;
  std::optional<std::regex> skip;
  bool report = false;
  bool progress = false;
};

double parse_number(const std::string& s, const std::string& what) {
  try {
    std::size_t used = 0;
    const double v = std::stod(s, &used);
    if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    usage_fail("bad number '" + s + "' in " + what);
  }
}
index_t parse_int(const std::string& s, const std::string& what) {
  const double v = parse_number(s, what);
  if (v != std::floor(v) || std::fabs(v) > 1e15) usage_fail("'" + s + "' in " + what + " is not an integer");
  return static_cast<index_t>(v);
}

compress_options parse_compress(const std::vector<std::string>& args) {
  compress_options o;
  bool have_in = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) usage_fail("option " + a + " needs a value");
      return args[++i];
    };
    if (a == "-o" || a == "--output") {
      o.out = value();
    } else if (a == "--dtype") {
      const std::string v = value();
      if (v == "fp16") o.type = out_dtype::fp16;
      else if (v == "bf16") o.type = out_dtype::bf16;
      else if (v == "int8") o.type = out_dtype::int8;
      else if (v == "int4") o.type = out_dtype::int4;
      else if (v == "fp32" || v == "f32") o.type = out_dtype::f32;
      else usage_fail("--dtype " + v + " (expected fp16, bf16, int8 or int4)");
    } else if (a == "--granularity") {
      const std::string v = value();
      if (v == "tensor") o.granularity = gran::tensor;
      else if (v == "channel") o.granularity = gran::channel;
      else if (v.rfind("group:", 0) == 0) {
        o.granularity = gran::group;
        o.group_size = parse_int(v.substr(6), "--granularity");
      } else usage_fail("--granularity " + v + " (expected tensor, channel or group:N)");
    } else if (a == "--axis") {
      o.axis = parse_int(value(), "--axis");
    } else if (a == "--scheme") {
      const std::string v = value();
      if (v == "symmetric") o.scheme = quant::scheme::symmetric;
      else if (v == "affine") o.scheme = quant::scheme::affine;
      else usage_fail("--scheme " + v + " (expected symmetric or affine)");
    } else if (a == "--observer") {
      const std::string v = value();
      if (v == "minmax") o.obs = observer::minmax;
      else if (v == "mse") o.obs = observer::mse;
      else if (v.rfind("percentile:", 0) == 0) {
        o.obs = observer::percentile;
        o.percentile = parse_number(v.substr(11), "--observer");
        if (!(o.percentile > 0.0 && o.percentile <= 100.0)) usage_fail("percentile " + v.substr(11) + " (expected 0 < P <= 100)");
      } else usage_fail("--observer " + v + " (expected minmax, mse or percentile:P)");
    } else if (a == "--compat") {
      const std::string v = value();
      if (v == "qprune") o.mode = compat::qprune;
      else if (v == "pytorch") o.mode = compat::pytorch;
      else if (v == "tensorflow") o.mode = compat::tensorflow;
      else if (v == "onnxruntime") o.mode = compat::onnxruntime;
      else usage_fail("--compat " + v + " (expected qprune, pytorch, tensorflow or onnxruntime)");
    } else if (a == "--prune") {
      const std::string v = value();
      auto frac = [&](const std::string& s) {
        const double x = parse_number(s, "--prune");
        if (!(x >= 0.0 && x <= 1.0)) usage_fail("sparsity " + s + " (expected 0 <= S <= 1)");
        return static_cast<float>(x);
      };
      if (v.rfind("magnitude:", 0) == 0) {
        o.pk = prune_kind::magnitude;
        o.sparsity = frac(v.substr(10));
      } else if (v.rfind("global:", 0) == 0) {
        o.pk = prune_kind::global;
        o.sparsity = frac(v.substr(7));
      } else if (v.rfind("channel:", 0) == 0) {
        o.pk = prune_kind::channel;
        o.sparsity = frac(v.substr(8));
      } else if (v.rfind("nm:", 0) == 0) {
        const std::string r = v.substr(3);
        const auto colon = r.find(':');
        if (colon == std::string::npos) usage_fail("--prune " + v + " (expected nm:N:M)");
        o.pk = prune_kind::nm;
        o.nm_n = static_cast<int>(parse_int(r.substr(0, colon), "--prune"));
        o.nm_m = static_cast<int>(parse_int(r.substr(colon + 1), "--prune"));
        if (!(o.nm_n >= 1 && o.nm_n < o.nm_m && o.nm_m <= 16)) usage_fail("--prune " + v + " (expected 1 <= N < M <= 16)");
      } else {
        usage_fail("--prune " + v + " (expected magnitude:S, global:S, nm:N:M or channel:S)");
      }
    } else if (a == "--skip") {
      const std::string v = value();
      try {
        o.skip = std::regex(v, std::regex::ECMAScript);
      } catch (const std::regex_error&) {
        usage_fail("--skip '" + v + "' is not a valid regular expression");
      }
    } else if (a == "--report") {
      o.report = true;
    } else if (a == "--progress") {
      o.progress = true;
    } else if (!a.empty() && a[0] == '-') {
      usage_fail("unknown option '" + a + "' for compress");
    } else if (have_in) {
      usage_fail("compress takes one input file");
    } else {
      o.in = a;
      have_in = true;
    }
  }
  if (!have_in) usage_fail("compress needs an input file");
  if (o.out.empty()) usage_fail("compress needs -o OUT.qpr");
  if (ext_of(o.out) != ".qpr") usage_fail("the output of compress must end in .qpr");
  // Defaults and combinations.
  const bool integer = o.type == out_dtype::int8 || o.type == out_dtype::int4;
  if (!integer && (o.granularity != gran::unset || o.axis || o.obs != observer::minmax ||
                   o.scheme != quant::scheme::symmetric || o.mode != compat::qprune)) {
    usage_fail("--granularity, --axis, --scheme, --observer and --compat need --dtype int8 or int4");
  }
  if (o.granularity == gran::unset) o.granularity = o.type == out_dtype::int4 ? gran::group : gran::channel;
  if (o.type == out_dtype::int4) {
    if (o.granularity != gran::group) usage_fail("--dtype int4 needs --granularity group:N");
    if (o.group_size == 0) o.group_size = 32;
    if (o.mode != compat::qprune || o.obs != observer::minmax) usage_fail("--dtype int4 supports --compat qprune with --observer minmax");
    if (o.axis && *o.axis != -1) usage_fail("--dtype int4 groups along the last axis (omit --axis)");
  }
  if (o.granularity == gran::group) {
    if (o.type == out_dtype::int4 && o.group_size == 0) o.group_size = 32;
    if (o.group_size < 16 || o.group_size > 256 || (o.group_size & (o.group_size - 1)) != 0)
      usage_fail("group size " + std::to_string(o.group_size) + " (expected a power of two from 16 to 256)");
    if (o.type == out_dtype::int8 && (o.mode != compat::qprune || o.obs != observer::minmax))
      usage_fail("--granularity group supports --compat qprune with --observer minmax");
    if (o.axis) usage_fail("groups run along the last axis (omit --axis)");
  }
  if (o.obs == observer::mse && o.scheme != quant::scheme::symmetric) usage_fail("--observer mse needs --scheme symmetric");
  if (o.mode == compat::tensorflow && (o.granularity != gran::channel || o.scheme != quant::scheme::symmetric || o.obs != observer::minmax))
    usage_fail("--compat tensorflow quantizes symmetric per channel with min/max (TFLite's weight rule)");
  if (o.mode != compat::qprune && o.obs != observer::minmax) usage_fail("--observer needs --compat qprune");
  return o;
}

/// One output tensor and the buffers its entry points into.
struct produced {
  qpr::tensor_entry entry;
  std::vector<std::shared_ptr<void>> keep;
  std::uint64_t input_bytes = 0;
  bool compressed = false;
  std::optional<quant::quant_report> report;
};

template <class T, class... A>
std::shared_ptr<T> hold(produced& p, A&&... a) {
  auto s = std::make_shared<T>(std::forward<A>(a)...);
  p.keep.push_back(s);
  return s;
}

/// The dense float values of an array in C order: a view of the file's bytes for
/// C-order f32, a converted copy otherwise (kept alive in `p`).
std::span<const float> float_values(const io::array& a, produced& p) {
  if (a.type() == io::dtype::f32 && (a.order() == io::array_order::c || a.rank() < 2)) {
    return {reinterpret_cast<const float*>(a.bytes().data()), static_cast<std::size_t>(a.size())};
  }
  auto v = hold<std::vector<float>>(p, a.to_float());
  return *v;
}

/// Symmetric / affine parameters of one slice under the options.
quant::affine_params choose_params(std::span<const float> x, quant::qrange r, const compress_options& o,
                                   const std::string& name) {
  const qprune::kernels::value_range vr = qprune::kernels::range_of(x);
  if (!vr.finite) throw qprune::config_error("tensor '" + name + "' has a NaN or infinite value (expected finite weights)");
  const float lo = std::min(vr.min, 0.0f), hi = std::max(vr.max, 0.0f);
  const bool sym = o.scheme == quant::scheme::symmetric;
  switch (o.mode) {
    case compat::pytorch: {
      quant::pytorch::observer_config c;
      c.type = quant::dtype::int8;
      c.scheme = sym ? quant::pytorch::qscheme::per_tensor_symmetric : quant::pytorch::qscheme::per_tensor_affine;
      return quant::pytorch::calculate_qparams(vr.min, vr.max, c);
    }
    case compat::onnxruntime:
      return quant::onnxruntime::compute_scale_zp(vr.min, vr.max, r, sym);
    default: break;
  }
  if (o.obs == observer::mse) return quant::mse_weight_search(x, r);
  if (o.obs == observer::percentile) {
    quant::onnxruntime::percentile_calibrator cal(2048, o.percentile,
                                                  sym ? quant::onnxruntime::percentile_mode::symmetric
                                                      : quant::onnxruntime::percentile_mode::asymmetric);
    cal.observe(x);
    return cal.params(r, o.scheme);
  }
  return sym ? quant::choose_symmetric_params(std::max(-lo, hi), r) : quant::choose_affine_params(lo, hi, r);
}

qprune::kernels::linear_quantizer make_quantizer(quant::affine_params p, quant::qrange r, compat mode) {
  qprune::kernels::linear_quantizer q;
  q.zero_point = p.zero_point;
  q.qmin = r.qmin;
  q.qmax = r.qmax;
  if (mode == compat::pytorch) {
    q.factor = 1.0f / p.scale;  // torch's quantize_val multiplies by the float32 reciprocal
    q.op = qprune::kernels::quantize_op::multiply;
  } else {
    q.factor = p.scale;
    q.op = qprune::kernels::quantize_op::divide;
  }
  return q;
}

/// int8 codes per tensor or per channel along `axis` (any axis of any rank).
void quantize_int8(const std::string& name, std::span<const float> x, const std::vector<index_t>& shape,
                   const compress_options& o, produced& p) {
  const bool sym = o.scheme == quant::scheme::symmetric;
  quant::qrange r = sym ? quant::narrow_range(quant::dtype::int8) : quant::full_range(quant::dtype::int8);
  if (o.mode == compat::pytorch) r = quant::full_range(quant::dtype::int8);
  if (o.mode == compat::onnxruntime) r = quant::onnxruntime::qrange_for(quant::dtype::int8, false, sym);
  auto codes = hold<qprune::aligned_vector<std::int8_t>>(p, x.size());
  auto scales = hold<std::vector<float>>(p);
  auto zps = hold<std::vector<std::int32_t>>(p);
  qpr::tensor_info& t = p.entry.info;
  t.type = qpr::dtype::int8;
  t.shape = shape;
  if (o.mode == compat::tensorflow) {
    // TFLite's PortableSymmetricQuantizeFloats per channel (ties away from zero).
    const index_t axis = o.axis.value_or(0);
    const index_t rows = shape[0];
    const index_t cols = rows == 0 ? 0 : static_cast<index_t>(x.size()) / rows;
    if (axis != 0) usage_fail("--compat tensorflow quantizes along axis 0");
    const quant::per_channel_params pc = quant::tflite::quantize_weights_per_channel(
        qprune::tensor_view<const float, 2>(x.data(), rows, cols), qprune::tensor_view<std::int8_t, 2>(codes->data(), rows, cols), 0);
    *scales = pc.scales;
    t.quant = qpr::granularity::channel;
    t.axis = 0;
    r = quant::tflite::weight_range;
  } else if (o.granularity == gran::tensor) {
    const quant::affine_params a = choose_params(x, r, o, name);
    qprune::kernels::quantize_linear<std::int8_t>(x, make_quantizer(a, r, o.mode), *codes);
    scales->push_back(a.scale);
    zps->push_back(a.zero_point);
    t.quant = qpr::granularity::tensor;
  } else {
    const index_t axis = o.axis.value_or(0);
    if (axis < 0 || axis >= static_cast<index_t>(shape.size())) {
      usage_fail("--axis " + std::to_string(axis) + " is outside tensor '" + name + "' of rank " + std::to_string(shape.size()));
    }
    index_t outer = 1, inner = 1;
    for (index_t d = 0; d < axis; ++d) outer *= shape[static_cast<std::size_t>(d)];
    for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
    const index_t len = shape[static_cast<std::size_t>(axis)];
    t.quant = qpr::granularity::channel;
    t.axis = axis;
    if (outer == 1) {
      // Channels are contiguous slices (axis 0, the usual case): the dispatched kernels.
      for (index_t c = 0; c < len; ++c) {
        const std::span<const float> slice = x.subspan(static_cast<std::size_t>(c * inner), static_cast<std::size_t>(inner));
        const quant::affine_params a = choose_params(slice, r, o, name);
        qprune::kernels::quantize_linear<std::int8_t>(
            slice, make_quantizer(a, r, o.mode),
            std::span<std::int8_t>(codes->data() + c * inner, static_cast<std::size_t>(inner)));
        scales->push_back(a.scale);
        zps->push_back(a.zero_point);
      }
    } else {
      // Strided channels: gather each one, quantize, scatter back.
      std::vector<float> g(static_cast<std::size_t>(outer * inner));
      std::vector<std::int8_t> q(g.size());
      for (index_t c = 0; c < len; ++c) {
        for (index_t a0 = 0; a0 < outer; ++a0)
          for (index_t i = 0; i < inner; ++i) g[static_cast<std::size_t>(a0 * inner + i)] = x[static_cast<std::size_t>((a0 * len + c) * inner + i)];
        const quant::affine_params a = choose_params(g, r, o, name);
        qprune::kernels::quantize_linear<std::int8_t>(g, make_quantizer(a, r, o.mode), std::span<std::int8_t>(q));
        for (index_t a0 = 0; a0 < outer; ++a0)
          for (index_t i = 0; i < inner; ++i) (*codes)[static_cast<std::size_t>((a0 * len + c) * inner + i)] = q[static_cast<std::size_t>(a0 * inner + i)];
        scales->push_back(a.scale);
        zps->push_back(a.zero_point);
      }
    }
  }
  t.param_count = scales->size();
  t.qmin = r.qmin;
  t.qmax = r.qmax;
  t.has_zero_points = std::any_of(zps->begin(), zps->end(), [](std::int32_t z) { return z != 0; });
  p.entry.sections[0] = std::as_bytes(std::span<const std::int8_t>(*codes));
  p.entry.sections[1] = std::as_bytes(std::span<const float>(*scales));
  if (t.has_zero_points) p.entry.sections[2] = std::as_bytes(std::span<const std::int32_t>(*zps));
}

/// int8 codes in groups of o.group_size along the last axis (quant::quantize per group).
void quantize_int8_groups(const std::string& name, std::span<const float> x, const std::vector<index_t>& shape,
                          const compress_options& o, produced& p) {
  const index_t cols = shape.back();
  const index_t rows = cols == 0 ? 0 : static_cast<index_t>(x.size()) / cols;
  const bool sym = o.scheme == quant::scheme::symmetric;
  const quant::qrange r = sym ? quant::narrow_range(quant::dtype::int8) : quant::full_range(quant::dtype::int8);
  quant::per_group_params pg{{}, {}, 1, o.group_size};
  const index_t groups = (cols + o.group_size - 1) / o.group_size;
  for (index_t i = 0; i < rows; ++i)
    for (index_t g = 0; g < groups; ++g) {
      const index_t b = g * o.group_size, e = std::min(cols, b + o.group_size);
      const quant::affine_params a = choose_params(x.subspan(static_cast<std::size_t>(i * cols + b), static_cast<std::size_t>(e - b)), r, o, name);
      pg.scales.push_back(a.scale);
      pg.zero_points.push_back(a.zero_point);
    }
  auto codes = hold<qprune::tensor<std::int8_t, 2>>(p, rows, cols);
  quant::quantize(qprune::tensor_view<const float, 2>(x.data(), rows, cols), codes->view(), pg, r);
  auto params = hold<quant::per_group_params>(p, std::move(pg));
  qpr::tensor_info& t = p.entry.info;
  t.type = qpr::dtype::int8;
  t.shape = shape;
  t.quant = qpr::granularity::group;
  t.axis = static_cast<index_t>(shape.size()) - 1;
  t.group_size = o.group_size;
  t.param_count = params->scales.size();
  t.qmin = r.qmin;
  t.qmax = r.qmax;
  t.has_zero_points = !sym;
  p.entry.sections[0] = std::as_bytes(codes->span());
  p.entry.sections[1] = std::as_bytes(std::span<const float>(params->scales));
  if (!sym) p.entry.sections[2] = std::as_bytes(std::span<const std::int32_t>(params->zero_points));
}

/// A pruned rank-2 tensor in its smallest storage (prune::choose_format), values
/// fp32 / fp16 / int8 (per-row symmetric scales, the sparse storages' rule).
bool store_sparse(const std::string& name, std::span<const float> x, index_t rows, index_t cols,
                  const prune::mask& keep, out_dtype type, const compress_options& o, produced& p) {
  const prune::value_kind vk = type == out_dtype::fp16 ? prune::value_kind::fp16
                               : type == out_dtype::int8 ? prune::value_kind::int8
                                                         : prune::value_kind::fp32;
  const qprune::tensor_view<const float, 2> w(x.data(), rows, cols);
  const qprune::tensor_view<const std::uint8_t, 2> k(keep.data(), rows, cols);
  prune::format_options fo;
  if (o.pk == prune_kind::nm) {
    // N:M pruning is stored packed N:M (what the sparse kernels run on), even
    // when a bitmask would be a few bytes smaller.
    fo.nm_group_sizes = {o.nm_m};
    fo.allow_dense = fo.allow_csr = fo.allow_bitmask = false;
  }
  const prune::format_choice ch = prune::choose_format(w, k, vk, fo);
  auto build = [&]<class V>() {
    switch (ch.format) {
      case prune::storage_format::csr: {
        auto m = hold<prune::csr_matrix<V>>(p, prune::csr_matrix<V>::from_dense(w, k));
        p.entry = qpr::entry(name, *m);
        return true;
      }
      case prune::storage_format::bitmask: {
        auto m = hold<prune::bitmask_matrix<V>>(p, prune::bitmask_matrix<V>::from_dense(w, k));
        p.entry = qpr::entry(name, *m);
        return true;
      }
      case prune::storage_format::packed_nm: {
        auto m = hold<prune::packed_nm_matrix<V>>(p, prune::packed_nm_matrix<V>::from_dense(w, k, ch.n, ch.m));
        p.entry = qpr::entry(name, *m);
        return true;
      }
      default: return false;
    }
  };
  switch (vk) {
    case prune::value_kind::fp16: return build.template operator()<qprune::half>();
    case prune::value_kind::int8: return build.template operator()<std::int8_t>();
    default: return build.template operator()<float>();
  }
}

produced compress_one(const io::array& a, const compress_options& o, const prune::mask* pruned) {
  produced p;
  p.input_bytes = a.bytes().size();
  p.entry.info.name = a.name();
  const std::vector<index_t>& shape = a.shape();
  const bool eligible = is_float_dtype(a.type()) && shape.size() >= 2 && !(o.skip && std::regex_search(a.name(), *o.skip));
  if (!io::converts_to_float(a.type())) {
    throw qprune::io_error("tensor '" + a.name() + "' has dtype " + std::string(io::to_string(a.type())) +
                           " (expected a dtype convertible to float)");
  }
  std::span<const float> x = float_values(a, p);
  if (!eligible) {
    // A copy: the input array may live in a buffer the next tensor reuses.
    const auto c = hold<qprune::aligned_vector<float>>(p, x.begin(), x.end());
    x = *c;
    p.entry = qpr::entry(a.name(), qprune::tensor_view<const float, 1>(x.data(), static_cast<index_t>(x.size())));
    p.entry.info.shape = shape;
    return p;
  }
  p.compressed = true;
  const index_t rows = shape[0];
  const index_t cols = rows == 0 ? 0 : static_cast<index_t>(x.size()) / rows;
  if (pruned != nullptr) {
    auto w = hold<std::vector<float>>(p, x.begin(), x.end());
    for (std::size_t i = 0; i < w->size(); ++i)
      if (pruned->data()[i] == 0) (*w)[i] = 0.0f;
    x = *w;
    if (shape.size() == 2 && (o.type == out_dtype::f32 || o.type == out_dtype::fp16 || o.type == out_dtype::int8) &&
        store_sparse(a.name(), x, rows, cols, *pruned, o.type, o, p)) {
      return p;
    }
  }
  switch (o.type) {
    case out_dtype::f32: {
      if (pruned == nullptr) x = *hold<qprune::aligned_vector<float>>(p, x.begin(), x.end());  // see above
      p.entry = qpr::entry(a.name(), qprune::tensor_view<const float, 1>(x.data(), static_cast<index_t>(x.size())));
      break;
    }
    case out_dtype::fp16: {
      auto h = hold<qprune::aligned_vector<qprune::half>>(p, x.size());
      qprune::kernels::convert(x, std::span<qprune::half>(*h));
      p.entry = qpr::entry(a.name(), qprune::tensor_view<const qprune::half, 1>(h->data(), static_cast<index_t>(h->size())));
      break;
    }
    case out_dtype::bf16: {
      auto h = hold<qprune::aligned_vector<qprune::bfloat16>>(p, x.size());
      qprune::kernels::convert(x, std::span<qprune::bfloat16>(*h));
      p.entry = qpr::entry(a.name(), qprune::tensor_view<const qprune::bfloat16, 1>(h->data(), static_cast<index_t>(h->size())));
      break;
    }
    case out_dtype::int8:
      if (o.granularity == gran::group) quantize_int8_groups(a.name(), x, shape, o, p);
      else quantize_int8(a.name(), x, shape, o, p);
      break;
    case out_dtype::int4: {
      const index_t c4 = shape.back();
      const index_t r4 = c4 == 0 ? 0 : static_cast<index_t>(x.size()) / c4;
      auto m = hold<quant::packed_int4_matrix>(
          p, quant::quantize_int4(qprune::tensor_view<const float, 2>(x.data(), r4, c4), o.group_size,
                                  o.scheme == quant::scheme::affine ? quant::int4_scheme::affine : quant::int4_scheme::symmetric));
      p.entry = qpr::entry(a.name(), *m);
      p.entry.info.axis = static_cast<index_t>(shape.size()) - 1;
      break;
    }
  }
  p.entry.info.shape = shape;
  return p;
}

/// The mask of one eligible tensor, or nullopt (not eligible / no pruning).
/// Views: nm groups run along the last axis; the other pruners see [shape0, rest].
qprune::tensor_view<const float, 2> prune_view(const io::array& a, const compress_options& o, std::vector<float>& owned) {
  const float* d = nullptr;
  if (a.type() == io::dtype::f32 && a.order() == io::array_order::c) {
    d = reinterpret_cast<const float*>(a.bytes().data());
  } else {
    owned = a.to_float();
    d = owned.data();
  }
  const index_t c = o.pk == prune_kind::nm ? a.shape().back() : (a.shape()[0] == 0 ? 0 : a.size() / a.shape()[0]);
  const index_t r = c == 0 ? 0 : a.size() / c;
  return {d, r, c};
}

bool prunable(const io::array& a, const compress_options& o) {
  return is_float_dtype(a.type()) && a.shape().size() >= 2 && !(o.skip && std::regex_search(a.name(), *o.skip));
}

int cmd_compress(const std::vector<std::string>& args) {
  const compress_options o = parse_compress(args);
  const auto t0 = std::chrono::steady_clock::now();
  const input_source src(o.in);
  const std::uint64_t total_in = src.data_bytes();
  // Global pruning ranks every eligible tensor together: all arrays stay loaded.
  std::vector<std::optional<prune::mask>> global_masks(src.size());
  std::vector<io::array> all;
  if (o.pk == prune_kind::global) {
    std::vector<std::vector<float>> owned(src.size());
    std::vector<qprune::tensor_view<const float, 2>> views;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < src.size(); ++i) {
      all.push_back(src.load(i, true));
      if (!prunable(all.back(), o)) continue;
      views.push_back(prune_view(all.back(), o, owned[i]));
      which.push_back(i);
    }
    auto ms = prune::global_magnitude_masks(views, o.sparsity);
    for (std::size_t k = 0; k < which.size(); ++k) global_masks[which[k]] = std::move(ms[k]);
  }
  std::vector<produced> out;
  out.reserve(src.size());
  struct report_row {
    std::string sqnr = "-";
    double sparsity = 0.0;
  };
  std::vector<report_row> rows(src.size());
  {
    progress_bar bar(o.progress, total_in, "compress");
    std::uint64_t done = 0;
    for (std::size_t i = 0; i < src.size(); ++i) {
      const io::array a = all.empty() ? src.load(i) : all[i];
      std::optional<prune::mask> mask = std::move(global_masks[i]);
      if (o.pk != prune_kind::none && o.pk != prune_kind::global && prunable(a, o)) {
        std::vector<float> owned;
        const auto v = prune_view(a, o, owned);
        switch (o.pk) {
          case prune_kind::magnitude: mask = prune::magnitude_mask(v, o.sparsity); break;
          case prune_kind::nm: mask = prune::n_m_mask(v, o.nm_n, o.nm_m); break;
          default: mask = prune::pytorch::ln_structured(v, prune::pytorch::amount(static_cast<double>(o.sparsity)), 2.0, 0); break;
        }
      }
      out.push_back(compress_one(a, o, mask ? &*mask : nullptr));
      produced& p = out.back();
      p.keep.push_back(std::make_shared<io::array>(a));  // passthrough entries may view it
      if (o.report) {
        report_row& row = rows[i];
        if (mask) row.sparsity = 1.0 - static_cast<double>(std::count(mask->data(), mask->data() + mask->size(), std::uint8_t{1})) /
                                           static_cast<double>(std::max<index_t>(1, mask->size()));
        if (p.compressed) {
          // Reconstruction straight from the entry's sections (what load() will see).
          qpr::tensor_info info = p.entry.info;
          for (std::size_t s = 0; s < qpr::section_count; ++s) info.section_bytes[s] = p.entry.sections[s].size();
          const qpr::tensor_ref ref{&info, p.entry.sections};
          const auto rec = qpr::to_float(ref);
          const std::vector<float> orig = a.to_float();
          const auto rep = quant::reconstruction_report(
              qprune::tensor_view<const float, 1>(orig.data(), static_cast<index_t>(orig.size())),
              qprune::tensor_view<const float, 1>(rec.data(), static_cast<index_t>(rec.size())));
          char b[32];
          std::snprintf(b, sizeof b, "%.2f", rep.sqnr_db);
          row.sqnr = b;
        }
      }
      src.release(i);
      done += p.input_bytes;
      bar.update(done);
    }
    bar.update(total_in);  // .npz totals count the .npy headers too
  }
  all.clear();
  std::vector<qpr::tensor_entry> entries;
  entries.reserve(out.size());
  for (const produced& p : out) entries.push_back(p.entry);
  qpr::metadata_map meta;
  for (const auto& [k, v] : src.metadata()) meta["source." + k] = v;
  meta["qprune.source"] = o.in.filename().string();
  {
    progress_bar bar(o.progress, total_in, "write   ");
    qpr::save_options so;
    so.progress = [&](std::uint64_t d, std::uint64_t t) { bar.update(t == 0 ? 0 : d * total_in / t); };
    qpr::save(o.out, entries, meta, so);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto out_bytes = fs::file_size(o.out);
  if (o.report) {
    std::printf("%-40s %-6s %-10s %10s %9s %12s %12s\n", "name", "dtype", "encoding", "SQNR dB", "sparsity", "bytes in",
                "bytes out");
    for (std::size_t i = 0; i < out.size(); ++i) {
      const qpr::tensor_info& t = out[i].entry.info;
      std::uint64_t bytes = 0;
      for (const auto& s : out[i].entry.sections) bytes += s.size();
      std::printf("%-40s %-6s %-10s %10s %8.2f%% %12llu %12llu\n", t.name.c_str(), std::string(qpr::to_string(t.type)).c_str(),
                  encoding_str(t).c_str(), rows[i].sqnr.c_str(), 100.0 * rows[i].sparsity,
                  static_cast<unsigned long long>(out[i].input_bytes), static_cast<unsigned long long>(bytes));
    }
    std::printf("total: %llu bytes in, %llu bytes out (file), ratio %.2fx, %.2f s, %.0f MB/s\n",
                static_cast<unsigned long long>(total_in), static_cast<unsigned long long>(out_bytes),
                out_bytes == 0 ? 0.0 : static_cast<double>(total_in) / static_cast<double>(out_bytes), secs,
                static_cast<double>(total_in) / 1e6 / std::max(secs, 1e-9));
  }
  return 0;
}

// ---------------------------------------------------------------------------
// decompress
// ---------------------------------------------------------------------------

int cmd_decompress(const std::vector<std::string>& args) {
  std::optional<fs::path> in;
  fs::path out;
  bool raw = false, progress = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-o" || a == "--output") {
      if (i + 1 >= args.size()) usage_fail("option -o needs a value");
      out = args[++i];
    } else if (a == "--raw") {
      raw = true;
    } else if (a == "--progress") {
      progress = true;
    } else if (!a.empty() && a[0] == '-') {
      usage_fail("unknown option '" + a + "' for decompress");
    } else if (in) {
      usage_fail("decompress takes one input file");
    } else {
      in = a;
    }
  }
  if (!in) usage_fail("decompress needs an input .qpr file");
  if (out.empty()) usage_fail("decompress needs -o OUT.npz or OUT.safetensors");
  const std::string oe = ext_of(out);
  if (oe != ".npz" && oe != ".safetensors") usage_fail("the output of decompress must end in .npz or .safetensors");
  if (ext_of(*in) != ".qpr") usage_fail("decompress reads a .qpr file");
  const qpr::file f = qpr::load(*in);
  std::vector<io::array> arrays;
  progress_bar bar(progress, f.file_bytes(), "decompress");
  std::uint64_t done = 0;
  auto bytes_array = [&](std::string name, io::dtype t, std::vector<index_t> shape, std::span<const std::byte> b) {
    arrays.push_back(io::array::copy_of(std::move(name), t, std::move(shape), io::array_order::c, b));
  };
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    const qpr::tensor_ref r = f.tensor(i);
    const qpr::tensor_info& t = *r.info;
    const bool plain_float = t.enc == qpr::encoding::dense && t.type == qpr::dtype::f32;
    if (!raw || plain_float) {
      const auto v = qpr::to_float(r);
      arrays.push_back(io::array::from_values<float>(t.name, t.shape, std::span<const float>(v)));
    } else {
      const auto vb = r.bytes(qpr::section::values);
      const std::uint64_t count = vb.size() / std::max<std::uint64_t>(1, qpr::element_bytes(t.type));
      const std::vector<index_t> vshape = t.enc == qpr::encoding::dense ? t.shape : std::vector<index_t>{static_cast<index_t>(count)};
      switch (t.type) {
        case qpr::dtype::f16: bytes_array(t.name + (t.enc == qpr::encoding::dense ? "" : ".values"), io::dtype::f16, vshape, vb); break;
        case qpr::dtype::bf16: {
          // .npz has no bfloat16: widen exactly (safetensors keeps BF16).
          if (oe == ".safetensors") {
            bytes_array(t.name + (t.enc == qpr::encoding::dense ? "" : ".values"), io::dtype::bf16, vshape, vb);
          } else {
            std::vector<float> w(count);
            for (std::size_t k = 0; k < w.size(); ++k) {
              std::uint16_t h;
              std::memcpy(&h, vb.data() + 2 * k, 2);
              w[k] = static_cast<float>(qprune::bfloat16::from_bits(h));
            }
            arrays.push_back(io::array::from_values<float>(t.name + (t.enc == qpr::encoding::dense ? "" : ".values"), vshape, std::span<const float>(w)));
          }
          break;
        }
        case qpr::dtype::f32: bytes_array(t.name + ".values", io::dtype::f32, vshape, vb); break;
        case qpr::dtype::int8: bytes_array(t.name + (t.enc == qpr::encoding::dense ? "" : ".values"), io::dtype::i8, vshape, vb); break;
        case qpr::dtype::uint8: bytes_array(t.name + (t.enc == qpr::encoding::dense ? "" : ".values"), io::dtype::u8, vshape, vb); break;
        case qpr::dtype::int4:
        case qpr::dtype::uint4: {
          // Unpacked to one code per byte, shape kept.
          const std::uint64_t last = t.shape.empty() ? 1 : static_cast<std::uint64_t>(t.shape.back());
          const std::uint64_t lines = last == 0 ? 0 : t.element_count() / last;
          const std::uint64_t rb = (last + 1) / 2;
          std::vector<std::int8_t> s4;
          std::vector<std::uint8_t> u4;
          for (std::uint64_t l = 0; l < lines; ++l)
            for (std::uint64_t c = 0; c < last; ++c) {
              const auto b = static_cast<std::uint8_t>(vb[l * rb + c / 2]);
              const auto nib = static_cast<std::uint8_t>((c % 2 == 0 ? b : (b >> 4)) & 0x0F);
              if (t.type == qpr::dtype::int4) s4.push_back(quant::int4_from_nibble(nib));
              else u4.push_back(nib);
            }
          if (t.type == qpr::dtype::int4) arrays.push_back(io::array::from_values<std::int8_t>(t.name, t.shape, std::span<const std::int8_t>(s4)));
          else arrays.push_back(io::array::from_values<std::uint8_t>(t.name, t.shape, std::span<const std::uint8_t>(u4)));
          break;
        }
      }
      const auto sc = r.scales();
      if (!sc.empty()) {
        std::vector<index_t> pshape{static_cast<index_t>(sc.size())};
        if (t.quant == qpr::granularity::group) {
          pshape = t.shape;
          auto& d = pshape[static_cast<std::size_t>(t.axis)];
          d = (d + t.group_size - 1) / t.group_size;
        }
        arrays.push_back(io::array::from_values<float>(t.name + ".scales", pshape, sc));
        std::vector<std::int32_t> z(sc.size(), 0);
        const auto zp = r.zero_points();
        if (!zp.empty()) std::copy(zp.begin(), zp.end(), z.begin());
        arrays.push_back(io::array::from_values<std::int32_t>(t.name + ".zero_points", pshape, std::span<const std::int32_t>(z)));
      }
      auto idx_dtype = [](int w) { return w == 1 ? io::dtype::u8 : w == 2 ? io::dtype::u16 : w == 4 ? io::dtype::u32 : io::dtype::u64; };
      const auto ib = r.bytes(qpr::section::indices);
      if (t.enc == qpr::encoding::csr) {
        bytes_array(t.name + ".col_indices", idx_dtype(t.index_bytes), {static_cast<index_t>(ib.size() / t.index_bytes)}, ib);
        const auto rp = r.bytes(qpr::section::row_ptr);
        bytes_array(t.name + ".row_ptr", idx_dtype(t.row_ptr_bytes), {static_cast<index_t>(rp.size() / t.row_ptr_bytes)}, rp);
      } else if (t.enc == qpr::encoding::nm) {
        bytes_array(t.name + ".positions", io::dtype::u8, {static_cast<index_t>(ib.size())}, ib);
      } else if (t.enc == qpr::encoding::bitmask) {
        const auto m = r.bytes(qpr::section::mask);
        bytes_array(t.name + ".mask", io::dtype::u8, {static_cast<index_t>(m.size())}, m);
      }
      if (t.enc != qpr::encoding::dense) {
        const std::vector<std::int64_t> sh(t.shape.begin(), t.shape.end());
        arrays.push_back(io::array::from_values<std::int64_t>(t.name + ".shape", {static_cast<index_t>(sh.size())}, std::span<const std::int64_t>(sh)));
      }
    }
    done += t.length;
    bar.update(done);
  }
  bar.finish();
  if (oe == ".npz") {
    io::write_npz(out, arrays);
  } else {
    std::map<std::string, std::string> meta;
    for (const auto& [k, v] : f.metadata()) meta[k] = v;
    io::write_safetensors(out, arrays, meta);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty()) usage_fail("no command given");
    const std::string cmd = args[0];
    args.erase(args.begin());
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      std::fputs(usage_text, stdout);
      return 0;
    }
    if (cmd == "inspect") return cmd_inspect(args);
    if (cmd == "compress") return cmd_compress(args);
    if (cmd == "decompress") return cmd_decompress(args);
    usage_fail("unknown command '" + cmd + "'");
  } catch (const usage_error& e) {
    std::fprintf(stderr, "qprune: %s\n%s", e.what.c_str(), usage_text);
    return 2;
  } catch (const qprune::error& e) {
    std::fprintf(stderr, "qprune: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qprune: error: %s\n", e.what());
    return 1;
  }
}
