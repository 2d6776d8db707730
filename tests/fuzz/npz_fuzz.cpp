// libFuzzer target for the .npz reader (io/npz.hpp): parses any input as a zip
// of .npy members (stored, deflated, zip64), converts every array to float and
// checks that writing the arrays and reading them back gives the same arrays.
// Only qprune::io_error may come out of the reader; anything else, a crash, a
// hang, a sanitizer report or a failed round trip is a bug.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "qprune/io/npz.hpp"

namespace io = qprune::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const std::vector<io::array> arrays = io::read_npz(bytes, "fuzz input");
    std::size_t total = 0;
    for (const io::array& a : arrays) {
      static_cast<void>(a.to_float());
      total += a.bytes().size();
    }
    if (total > (std::size_t{1} << 22)) return 0;  // deflate bombs up to 1032:1: keep runs fast
    for (const auto method : {io::zip_method::stored, io::zip_method::deflated}) {
      const std::vector<io::array> back = io::read_npz(io::encode_npz(arrays, method), "re-encoded");
      if (back.size() != arrays.size()) std::abort();
      for (std::size_t i = 0; i < back.size(); ++i) {
        const io::array& a = arrays[i];
        const io::array& b = back[i];
        if (b.name() != a.name() || b.type() != a.type() || b.shape() != a.shape() || b.order() != a.order() ||
            !std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin(), b.bytes().end())) {
          std::abort();
        }
      }
    }
  } catch (const qprune::io_error&) {
  }
  return 0;
}
