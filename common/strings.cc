#include "common/strings.h"

namespace sluice {

std::vector<std::string_view> SplitString(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t pos = text.find(sep, start);
    if (pos == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, pos - start));
    start = pos + 1;
  }
}

bool ParseUint(std::string_view text, uint64_t* value, int base) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *value, base);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace sluice
