// Small string helpers. Debian's Abseil is built without std::string_view interop, so the
// project uses these instead of absl::StrCat / StrSplit / SimpleAtoi.
#pragma once

#include <charconv>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

/// Concatenates anything streamable; integers of 8 bits print as numbers.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream out;
  auto put = [&out](const auto& a) {
    using T = std::decay_t<decltype(a)>;
    if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) {
      out << static_cast<int>(a);
    } else {
      out << a;
    }
  };
  (put(args), ...);
  return out.str();
}

std::vector<std::string_view> SplitString(std::string_view text, char sep);

/// Parses a whole decimal (or hex with base 16) unsigned number; false on any junk.
bool ParseUint(std::string_view text, uint64_t* value, int base = 10);

}  // namespace sluice
