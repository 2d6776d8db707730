// libFuzzer target for the .qpr loader (io/format.hpp): parses any input with
// eager verification and converts every tensor (dense floats and the library's
// types). Only qprune::io_error may come out of the loader; anything else,
// a crash, a hang or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "qprune/io/format.hpp"

namespace qpr = qprune::io::qpr;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The loader needs the 64-byte alignment a mapping gives.
  qprune::aligned_vector<std::byte> buf(size);
  if (size != 0) std::memcpy(buf.data(), data, size);
  try {
    const qpr::file f = qpr::file::from_bytes(buf, qpr::verify::lazy);
    for (std::size_t i = 0; i < f.tensors().size(); ++i) {
      const qpr::tensor_info& t = f.tensors()[i];
      const qpr::tensor_ref r = f.tensor(i);
      // Dense output can be far larger than the input for sparse tensors: bound it.
      if (t.element_count() > (std::uint64_t{1} << 20)) continue;
      static_cast<void>(qpr::to_float(r));
      try {
        if (t.enc == qpr::encoding::csr && t.type == qpr::dtype::f32) static_cast<void>(qpr::load_csr<float>(r));
        if (t.enc == qpr::encoding::csr && t.type == qpr::dtype::int8) static_cast<void>(qpr::load_csr<std::int8_t>(r));
        if (t.enc == qpr::encoding::bitmask && t.type == qpr::dtype::f16) static_cast<void>(qpr::load_bitmask<qprune::half>(r));
        if (t.enc == qpr::encoding::bitmask && t.type == qpr::dtype::int8) static_cast<void>(qpr::load_bitmask<std::int8_t>(r));
        if (t.enc == qpr::encoding::nm && t.type == qpr::dtype::f32) static_cast<void>(qpr::load_packed_nm<float>(r));
        if (t.enc == qpr::encoding::nm && t.type == qpr::dtype::int8) static_cast<void>(qpr::load_packed_nm<std::int8_t>(r));
        if (t.enc == qpr::encoding::dense && qpr::is_4bit(t.type)) static_cast<void>(qpr::load_packed_int4(r));
        if (t.enc == qpr::encoding::dense && t.type == qpr::dtype::int8) static_cast<void>(qpr::load_tensor<std::int8_t, 2>(r));
      } catch (const qprune::io_error&) {
        // A valid file whose tensor is not of the asked kind, or not rebuildable exactly.
      }
    }
  } catch (const qprune::io_error&) {
  }
  return 0;
}
