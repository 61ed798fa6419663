#include "lossguard/wire/json_text.h"

#include <vector>

namespace lossguard::wire {

std::optional<JsonTextProblem> CheckJsonText(std::string_view text, std::size_t max_depth) {
  // Element counters of the two outermost containers, enough to name the record in both body
  // shapes ([r0, r1, ...] and {"records": [r0, r1, ...]}).
  std::size_t depth = 0;
  bool outer_is_array = false;
  bool second_is_array = false;
  std::size_t outer_index = 0;
  std::size_t second_index = 0;
  bool in_string = false;
  auto element = [&]() -> std::optional<std::size_t> {
    if (depth >= 1 && outer_is_array) return outer_index;
    if (depth >= 2 && second_is_array) return second_index;
    return std::nullopt;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\0') {
      return JsonTextProblem{i, element(),
                             "NUL byte at byte offset " + std::to_string(i) +
                                 " (JSON text may not contain one; nothing was stored)"};
    }
    if (in_string) {
      if (c == '\\') {
        // Skip the escaped character unless it is a NUL, which the next iteration must see.
        if (i + 1 < text.size() && text[i + 1] != '\0') ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) {
          return JsonTextProblem{i, element(),
                                 "JSON nested deeper than " + std::to_string(max_depth) +
                                     " levels at byte offset " + std::to_string(i) +
                                     " (the limit for any JSON lossguard reads)"};
        }
        if (depth == 1) outer_is_array = c == '[';
        if (depth == 2) {
          second_is_array = c == '[';
          second_index = 0;
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      case ',':
        if (depth == 1) ++outer_index;
        if (depth == 2) ++second_index;
        break;
      default:
        break;
    }
  }
  return std::nullopt;
}

}  // namespace lossguard::wire
