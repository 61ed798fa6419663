#include "lossguard/wire/json_numbers.h"

#include <cmath>
#include <limits>

#include "lossguard/wire/json_text.h"
#include "non_finite_tokens.h"

namespace lossguard::wire {

nlohmann::json NumberToJson(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  return value;
}

std::optional<double> NonFiniteFromString(std::string_view text) {
  if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (text == "Infinity") return std::numeric_limits<double>::infinity();
  if (text == "-Infinity") return -std::numeric_limits<double>::infinity();
  return std::nullopt;
}

std::optional<double> NumberFromJson(const nlohmann::json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string()) return NonFiniteFromString(value.get_ref<const std::string&>());
  return std::nullopt;
}

nlohmann::json ParseJsonText(std::string_view text) {
  if (std::optional<JsonTextProblem> problem = CheckJsonText(text)) {
    throw nlohmann::json::parse_error::create(101, problem->offset + 1, problem->message, nullptr);
  }
  return ParseCheckedJsonText(text);
}

nlohmann::json ParseCheckedJsonText(std::string_view text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error&) {
    // nlohmann/json rejects bare NaN/Infinity: retry once with them quoted.
    std::optional<std::string> quoted = QuoteBareNonFiniteTokens(text);
    if (!quoted) throw;
    return nlohmann::json::parse(*quoted);
  }
}

}  // namespace lossguard::wire
