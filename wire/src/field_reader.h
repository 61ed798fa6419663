#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "lossguard/wire/record_codec.h"

namespace lossguard::wire {

// A short rendering of an offending value for error messages (at most 64 characters).
std::string ShowJson(const nlohmann::json& value);

// Reads fields of one JSON object of record `index`, stopping at the first problem. Each reader
// returns false after recording the error (error()), so that callers read as a straight sequence
// of `if (!reader.Int(...)) return reader.error()`. Field names in errors carry `prefix`
// ("micro[2].", "guard.").
class FieldReader {
 public:
  FieldReader(const nlohmann::json& object, std::size_t index, std::string prefix = "")
      : object_(object), index_(index), prefix_(std::move(prefix)) {}

  const RecordError& error() const { return error_; }

  // Records the error and returns false.
  bool Fail(std::string_view field, std::string message);

  // nullptr when the field is absent or JSON null (null means "not provided" for optional fields).
  const nlohmann::json* Find(std::string_view field) const;

  // An integer in [min, max]; an integral float (3.0) counts, as JSON does not tell them apart.
  bool Int(std::string_view field, bool required, std::int64_t min, std::int64_t max,
           std::optional<std::int64_t>& out);
  bool Int(std::string_view field, std::int64_t min, std::int64_t max, std::int64_t& out);

  // A number or one of "NaN", "Infinity", "-Infinity".
  bool Number(std::string_view field, bool required, std::optional<double>& out);

  // A string of 1 (0 if allow_empty) to max_length characters.
  bool String(std::string_view field, bool required, std::size_t max_length, std::string& out,
              bool allow_empty = false);

  // A finite JSON number (no non-finite tokens), optional.
  bool FiniteNumber(std::string_view field, std::optional<double>& out);

 private:
  std::string Name(std::string_view field) const { return prefix_ + std::string(field); }

  const nlohmann::json& object_;
  std::size_t index_;
  std::string prefix_;
  RecordError error_;
};

}  // namespace lossguard::wire
