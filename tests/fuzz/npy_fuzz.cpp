// libFuzzer target for the .npy reader (io/npy.hpp): parses any input, converts
// the array to float and checks that writing it and reading it back gives the
// same array. Only qprune::io_error may come out of the reader; anything else,
// a crash, a hang, a sanitizer report or a failed round trip is a bug.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "qprune/io/npy.hpp"

namespace io = qprune::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The fuzzer's buffer has arbitrary alignment: the reader copies misaligned data.
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const io::array a = io::read_npy(bytes, "fuzz input", "x");
    static_cast<void>(a.to_float());
    static_cast<void>(a.to_c_order());
    const io::array b = io::read_npy(io::encode_npy(a), "re-encoded", "x");
    if (b.type() != a.type() || b.shape() != a.shape() || b.order() != a.order() ||
        !std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin(), b.bytes().end())) {
      std::abort();  // write(read(x)) must read back identically
    }
  } catch (const qprune::io_error&) {
  }
  return 0;
}
