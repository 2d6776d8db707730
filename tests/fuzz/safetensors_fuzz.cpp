// libFuzzer target for the safetensors reader (io/safetensors.hpp): parses any
// input, converts every tensor that has a float conversion and checks that
// writing the tensors and metadata and reading them back gives the same file
// contents. Only qprune::io_error may come out of the reader; anything else, a
// crash, a hang, a sanitizer report or a failed round trip is a bug.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "qprune/io/safetensors.hpp"

namespace io = qprune::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const io::safetensors_file f = io::read_safetensors(bytes, "fuzz input");
    for (const io::array& a : f.tensors) {
      if (io::converts_to_float(a.type())) static_cast<void>(a.to_float());
    }
    const io::safetensors_file g = io::read_safetensors(io::encode_safetensors(f.tensors, f.metadata), "re-encoded");
    if (g.metadata != f.metadata || g.tensors.size() != f.tensors.size()) std::abort();
    for (const io::array& a : f.tensors) {
      const io::array* b = g.find(a.name());
      if (b == nullptr || b->type() != a.type() || b->shape() != a.shape() ||
          !std::equal(a.bytes().begin(), a.bytes().end(), b->bytes().begin(), b->bytes().end())) {
        std::abort();
      }
    }
  } catch (const qprune::io_error&) {
  }
  return 0;
}
