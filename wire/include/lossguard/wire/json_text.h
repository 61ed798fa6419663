#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace lossguard::wire {

// The deepest nesting of arrays and objects lossguard accepts in any JSON text it reads (request
// bodies, NDJSON lines, trainer_state.json, server responses). A step record needs 3 levels in a
// {"records": [...]} body (5 with micro-batches); the limit leaves room for unknown fields while
// keeping every recursive walk (parsing, dump(), copies) far from the end of the stack.
inline constexpr std::size_t kMaxJsonDepth = 64;

// Why a JSON text was refused before parsing. `offset` is the 0-based byte offset in the text.
// `element` is the 0-based index of the element of the outermost array that holds the problem, or
// of the array one level below an outermost object ({"records": [...]}): the record, for batches.
struct JsonTextProblem {
  std::size_t offset = 0;
  std::optional<std::size_t> element;
  std::string message;
};

// Checks, in one pass without recursion, what nlohmann::json's parser would get wrong or what would
// make later recursion unsafe: a NUL byte (the parser takes it for the end of the input, silently
// dropping everything after it) and nesting deeper than `max_depth`. Everything else is left to the
// parser. nullopt when the text passes.
std::optional<JsonTextProblem> CheckJsonText(std::string_view text,
                                             std::size_t max_depth = kMaxJsonDepth);

}  // namespace lossguard::wire
