// Strict JSON for the file formats' metadata (safetensors headers, the .qpr model
// description): nlohmann-json with duplicate keys and excess nesting rejected, so
// a file cannot say two things at once or make the parser recurse without bound.
// Each caller words the errors for its own format.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qprune/core/error.hpp"

namespace qprune::io::detail {

/// What parse_strict_json rejected.
enum class json_problem {
  too_deep,       ///< objects / arrays nested deeper than max_depth
  duplicate_key,  ///< a key twice in one object (detail: the key)
  invalid,        ///< not JSON at all (detail: the parser's message)
};

/// Parses `text`; on a problem throws error(problem, detail), an io_error the
/// caller words (for example "metadata 'qprune.model' has the key 'ops' twice").
template <class MakeError>
[[nodiscard]] nlohmann::json parse_strict_json(std::string_view text, int max_depth, const MakeError& error) {
  std::vector<std::set<std::string>> keys;
  int depth = 0;
  const auto cb = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) -> bool {
    using ev_t = nlohmann::json::parse_event_t;
    switch (ev) {
      case ev_t::object_start:
      case ev_t::array_start:
        if (++depth > max_depth) throw error(json_problem::too_deep, std::string());
        if (ev == ev_t::object_start) keys.emplace_back();
        break;
      case ev_t::object_end:
      case ev_t::array_end:
        --depth;
        if (ev == ev_t::object_end && !keys.empty()) keys.pop_back();
        break;
      case ev_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          throw error(json_problem::duplicate_key, parsed.get<std::string>());
        }
        break;
      case ev_t::value: break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), cb);
  } catch (const nlohmann::json::exception& e) {
    throw error(json_problem::invalid, std::string(e.what()));
  }
}

}  // namespace qprune::io::detail
