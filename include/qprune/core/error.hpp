// The exception hierarchy thrown at qprune's API boundaries. Every message is
// prefixed with its kind ("[qprune.shape] ...") and says what was wrong and
// what was expected; doc/errors.md lists the kinds.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace qprune {

/// Base of every exception qprune throws. Catch this to handle all of them.
class error : public std::runtime_error {
 public:
  /// `kind` is the short category ("shape", "config", "io"); `what` the sentence.
  error(std::string_view kind, std::string_view what)
      : std::runtime_error(make_message(kind, what)) {}

 private:
  static std::string make_message(std::string_view kind, std::string_view what) {
    std::string m = "[qprune.";
    m.append(kind);
    m.append("] ");
    m.append(what);
    return m;
  }
};

/// Extents or sizes that do not fit together (a view larger than its buffer,
/// a weight matrix whose columns do not match the input, ...).
class shape_error : public error {
 public:
  explicit shape_error(std::string_view what) : error("shape", what) {}
};

/// A parameter outside its valid range: a sparsity outside [0, 1], a bit width
/// the scheme does not support, an instruction set the CPU lacks, ...
class config_error : public error {
 public:
  explicit config_error(std::string_view what) : error("config", what) {}
};

/// A file that cannot be read or written, or whose contents are invalid.
class io_error : public error {
 public:
  explicit io_error(std::string_view what) : error("io", what) {}
};

}  // namespace qprune
