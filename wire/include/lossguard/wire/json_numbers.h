#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

namespace lossguard::wire {

// JSON has no NaN or Infinity. Wire format v1 writes them as the strings "NaN", "Infinity" and
// "-Infinity"; these helpers are the one place that encodes and decodes that convention.

// A finite double as a JSON number; a non-finite one as its string.
nlohmann::json NumberToJson(double value);

// A JSON number, or one of the three non-finite strings, as a double. nullopt for anything else
// (including null and other strings).
std::optional<double> NumberFromJson(const nlohmann::json& value);

// "NaN", "Infinity", "-Infinity" -> the double; nullopt for any other text.
std::optional<double> NonFiniteFromString(std::string_view text);

// Parses JSON text that may hold bare NaN, Infinity, -Infinity tokens (as Python's json module
// writes them), which become the strings above. Throws nlohmann::json::exception like
// nlohmann::json::parse for anything else that is not JSON (parse_error; out_of_range for a number
// beyond a double, such as 1e999), and parse_error for text that CheckJsonText
// refuses (a NUL byte, nesting deeper than kMaxJsonDepth): the one entry point for JSON that comes
// from outside the process.
nlohmann::json ParseJsonText(std::string_view text);

}  // namespace lossguard::wire
