#include "field_reader.h"

#include <cmath>
#include <limits>

#include "lossguard/wire/json_numbers.h"

namespace lossguard::wire {

namespace {

using nlohmann::json;

bool IsIntegral(double value) {
  // 2^63 is the first double outside int64; everything below it that has no fraction converts
  // exactly.
  return std::isfinite(value) && value == std::trunc(value) && value >= -9223372036854775808.0 &&
         value < 9223372036854775808.0;
}

std::string NullHint(const json& value) {
  return value.is_null()
             ? " (a JSON library may have written NaN as null: send the string \"NaN\" instead)"
             : "";
}

}  // namespace

std::string ShowJson(const json& value) {
  std::string text = value.dump();
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return text;
}

bool FieldReader::Fail(std::string_view field, std::string message) {
  error_ = RecordError{index_, prefix_ + std::string(field), std::move(message)};
  return false;
}

const json* FieldReader::Find(std::string_view field) const {
  auto it = object_.find(field);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool FieldReader::Int(std::string_view field, bool required, std::int64_t min, std::int64_t max,
                      std::optional<std::int64_t>& out) {
  const json* value = Find(field);
  if (value == nullptr) {
    if (required)
      return Fail(field, Name(field) + " is required (an integer from " + std::to_string(min) +
                             " to " + std::to_string(max) + ")");
    return true;
  }
  std::int64_t parsed = 0;
  if (value->is_number_unsigned()) {
    auto u = value->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return Fail(
          field, Name(field) + " must fit in a signed 64-bit integer, but got " + ShowJson(*value));
    }
    parsed = static_cast<std::int64_t>(u);
  } else if (value->is_number_integer()) {
    parsed = value->get<std::int64_t>();
  } else if (value->is_number_float() && IsIntegral(value->get<double>())) {
    // Python trainers sometimes send floats.
    parsed = static_cast<std::int64_t>(value->get<double>());
  } else {
    return Fail(field, Name(field) + " must be an integer, but got " + ShowJson(*value));
  }
  if (parsed < min) {
    return Fail(field, Name(field) + " must be >= " + std::to_string(min) + ", but got " +
                           std::to_string(parsed));
  }
  if (parsed > max) {
    return Fail(field, Name(field) + " must be <= " + std::to_string(max) + ", but got " +
                           std::to_string(parsed));
  }
  out = parsed;
  return true;
}

bool FieldReader::Int(std::string_view field, std::int64_t min, std::int64_t max,
                      std::int64_t& out) {
  std::optional<std::int64_t> value;
  if (!Int(field, /*required=*/true, min, max, value)) return false;
  out = *value;
  return true;
}

bool FieldReader::Number(std::string_view field, bool required, std::optional<double>& out) {
  auto it = object_.find(field);
  if (it == object_.end() || (it->is_null() && !required)) {
    if (required)
      return Fail(field,
                  Name(field) + " is required (a number, or \"NaN\", \"Infinity\", \"-Infinity\")");
    return true;
  }
  std::optional<double> parsed = NumberFromJson(*it);
  if (!parsed) {
    return Fail(field, Name(field) +
                           " must be a number, or \"NaN\", \"Infinity\", \"-Infinity\", but got " +
                           ShowJson(*it) + NullHint(*it));
  }
  out = parsed;
  return true;
}

bool FieldReader::String(std::string_view field, bool required, std::size_t max_length,
                         std::string& out, bool allow_empty) {
  const json* value = Find(field);
  if (value == nullptr) {
    if (required) return Fail(field, Name(field) + " is required (a string)");
    return true;
  }
  if (!value->is_string())
    return Fail(field, Name(field) + " must be a string, but got " + ShowJson(*value));
  out = value->get<std::string>();
  if ((out.empty() && !allow_empty) || out.size() > max_length) {
    return Fail(field, Name(field) + " must be 1-" + std::to_string(max_length) +
                           " characters long, but got " + std::to_string(out.size()));
  }
  return true;
}

bool FieldReader::FiniteNumber(std::string_view field, std::optional<double>& out) {
  const json* value = Find(field);
  if (value == nullptr) return true;
  if (!value->is_number())
    return Fail(field, Name(field) + " must be a finite number, but got " + ShowJson(*value));
  out = value->get<double>();
  return true;
}

}  // namespace lossguard::wire
