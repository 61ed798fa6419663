#include "non_finite_tokens.h"

#include <array>

namespace lossguard::wire {

std::optional<std::string> QuoteBareNonFiniteTokens(std::string_view text) {
  constexpr std::array<std::string_view, 3> kTokens = {"-Infinity", "Infinity", "NaN"};
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  bool changed = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (std::string_view token : kTokens) {
      if (text.substr(i, token.size()) != token) continue;
      std::size_t end = i + token.size();
      bool delimited = end == text.size() || text[end] == ',' || text[end] == '}' ||
                       text[end] == ']' || text[end] == ' ' || text[end] == '\t' ||
                       text[end] == '\r' || text[end] == '\n';
      if (!delimited) continue;
      out += '"';
      out += token;
      out += '"';
      i = end - 1;
      replaced = changed = true;
      break;
    }
    if (!replaced) out += c;
  }
  if (!changed) return std::nullopt;
  return out;
}

}  // namespace lossguard::wire
