#include "lossguard/wire/record_codec.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "lossguard/wire/json_numbers.h"
#include "lossguard/wire/json_text.h"
#include "non_finite_tokens.h"

namespace lossguard::wire {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxRunLength = 128;
constexpr std::size_t kMaxMicroBatches = 1 << 16;
constexpr std::array<std::string_view, 15> kKnownFields = {"run",      "step",
                                                           "rank",     "world_size",
                                                           "ga_steps", "micro_batch_size",
                                                           "loss",     "grad_norm",
                                                           "tokens",   "vocab_size",
                                                           "lr",       "ref_loss",
                                                           "micro",    "nonfinite_grads",
                                                           "time"};

bool IsIntegral(double value) {
  // 2^63 is the first double outside int64; everything below it that has no fraction converts
  // exactly.
  return std::isfinite(value) && value == std::trunc(value) && value >= -9223372036854775808.0 &&
         value < 9223372036854775808.0;
}

// A short rendering of an offending value for error messages.
std::string Show(const json& value) {
  std::string text = value.dump();
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return text;
}

std::string NullHint(const json& value) {
  return value.is_null()
             ? " (a JSON library may have written NaN as null: send the string \"NaN\" instead)"
             : "";
}

// Reads fields of one record object, stopping at the first problem. Each Get* returns false after
// recording the error, so that callers read as a straight sequence of `if (!Get...) return`.
class FieldReader {
 public:
  FieldReader(const json& object, std::size_t index, std::string prefix = "")
      : object_(object), index_(index), prefix_(std::move(prefix)) {}

  const RecordError& error() const { return error_; }

  bool Fail(std::string_view field, std::string message) {
    error_ = RecordError{index_, prefix_ + std::string(field), std::move(message)};
    return false;
  }

  // nullptr when the field is absent or JSON null (null means "not provided" for optional fields).
  const json* Find(std::string_view field) const {
    auto it = object_.find(field);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  bool Int(std::string_view field, bool required, std::int64_t min, std::int64_t max,
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
        return Fail(field,
                    Name(field) + " must fit in a signed 64-bit integer, but got " + Show(*value));
      }
      parsed = static_cast<std::int64_t>(u);
    } else if (value->is_number_integer()) {
      parsed = value->get<std::int64_t>();
    } else if (value->is_number_float() && IsIntegral(value->get<double>())) {
      // JSON (and JSON Schema) do not distinguish 3 from 3.0; Python trainers sometimes send
      // floats.
      parsed = static_cast<std::int64_t>(value->get<double>());
    } else {
      return Fail(field, Name(field) + " must be an integer, but got " + Show(*value));
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

  bool Int(std::string_view field, std::int64_t min, std::int64_t max, std::int64_t& out) {
    std::optional<std::int64_t> value;
    if (!Int(field, /*required=*/true, min, max, value)) return false;
    out = *value;
    return true;
  }

  // A number or one of "NaN", "Infinity", "-Infinity".
  bool Number(std::string_view field, bool required, std::optional<double>& out) {
    auto it = object_.find(field);
    if (it == object_.end() || (it->is_null() && !required)) {
      if (required)
        return Fail(field, Name(field) +
                               " is required (a number, or \"NaN\", \"Infinity\", \"-Infinity\")");
      return true;
    }
    std::optional<double> parsed = NumberFromJson(*it);
    if (!parsed) {
      return Fail(field,
                  Name(field) +
                      " must be a number, or \"NaN\", \"Infinity\", \"-Infinity\", but got " +
                      Show(*it) + NullHint(*it));
    }
    out = parsed;
    return true;
  }

  // A string of 1 (0 if allow_empty) to max_length characters.
  bool String(std::string_view field, bool required, std::size_t max_length, std::string& out,
              bool allow_empty = false) {
    const json* value = Find(field);
    if (value == nullptr) {
      if (required) return Fail(field, Name(field) + " is required (a string)");
      return true;
    }
    if (!value->is_string())
      return Fail(field, Name(field) + " must be a string, but got " + Show(*value));
    out = value->get<std::string>();
    if ((out.empty() && !allow_empty) || out.size() > max_length) {
      return Fail(field, Name(field) + " must be 1-" + std::to_string(max_length) +
                             " characters long, but got " + std::to_string(out.size()));
    }
    return true;
  }

  bool FiniteNumber(std::string_view field, std::optional<double>& out) {
    const json* value = Find(field);
    if (value == nullptr) return true;
    if (!value->is_number())
      return Fail(field, Name(field) + " must be a finite number, but got " + Show(*value));
    out = value->get<double>();
    return true;
  }

 private:
  std::string Name(std::string_view field) const { return prefix_ + std::string(field); }

  const json& object_;
  std::size_t index_;
  std::string prefix_;
  RecordError error_;
};

bool IsRunChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

bool ReadMicro(const json& array, std::size_t index, std::vector<MicroBatch>& out,
               RecordError& error) {
  FieldReader top(json::object(), index);
  if (!array.is_array()) {
    top.Fail("micro", "micro must be an array of {loss, tokens, loss_sum}, but got " + Show(array));
    error = top.error();
    return false;
  }
  if (array.size() > kMaxMicroBatches) {
    top.Fail("micro", "micro has " + std::to_string(array.size()) + " entries; at most " +
                          std::to_string(kMaxMicroBatches) + " are accepted");
    error = top.error();
    return false;
  }
  out.reserve(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    const json& entry = array[i];
    std::string prefix = "micro[" + std::to_string(i) + "].";
    if (!entry.is_object()) {
      error =
          RecordError{index, "micro[" + std::to_string(i) + "]",
                      "micro[" + std::to_string(i) +
                          "] must be an object {loss, tokens, loss_sum}, but got " + Show(entry)};
      return false;
    }
    FieldReader reader(entry, index, prefix);
    std::optional<double> loss, loss_sum;
    std::optional<std::int64_t> tokens;
    if (!reader.Number("loss", true, loss) || !reader.Int("tokens", true, 0, kMaxCount, tokens) ||
        !reader.Number("loss_sum", false, loss_sum)) {
      error = reader.error();
      return false;
    }
    out.push_back(MicroBatch{*loss, *tokens, loss_sum});
  }
  return true;
}

// Splits NDJSON into non-blank lines, remembering each line's 1-based number.
template <typename Fn>
bool ForEachLine(std::string_view body, Fn&& fn) {
  std::size_t line_number = 0;
  while (!body.empty()) {
    std::size_t end = body.find('\n');
    std::string_view line = body.substr(0, end);
    body = end == std::string_view::npos ? std::string_view() : body.substr(end + 1);
    ++line_number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty()) continue;
    if (!fn(line, line_number)) return false;
  }
  return true;
}

}  // namespace

std::string RecordError::Describe() const {
  std::string out;
  if (record) out += "records[" + std::to_string(*record) + "]";
  if (!field.empty()) out += (out.empty() ? "" : ".") + field;
  if (!out.empty()) out += ": ";
  return out + message;
}

std::optional<BodyFormat> BodyFormatFromContentType(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  while (!media.empty() && media.front() == ' ') media.remove_prefix(1);
  std::string lower(media);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "application/json") return BodyFormat::kJson;
  if (lower == "application/x-ndjson" || lower == "application/ndjson" ||
      lower == "application/jsonl") {
    return BodyFormat::kNdjson;
  }
  return std::nullopt;
}

Result<StepRecord, RecordError> ParseRecord(const json& object, std::size_t index) {
  if (!object.is_object()) {
    return RecordError{index, "", "a record must be a JSON object, but got " + Show(object)};
  }
  FieldReader reader(object, index);
  StepRecord record;

  const json* run = reader.Find("run");
  if (run == nullptr)
    return RecordError{index, "run", "run is required (a string of 1-128 [A-Za-z0-9._:-])"};
  if (!run->is_string())
    return RecordError{index, "run", "run must be a string, but got " + Show(*run)};
  record.run = run->get<std::string>();
  if (record.run.empty() || record.run.size() > kMaxRunLength) {
    return RecordError{
        index, "run",
        "run must be 1-128 characters long, but got " + std::to_string(record.run.size())};
  }
  for (char c : record.run) {
    if (!IsRunChar(c)) {
      return RecordError{index, "run",
                         "run may contain only [A-Za-z0-9._:-], but got " + Show(*run)};
    }
  }

  std::optional<double> loss;
  std::optional<std::int64_t> rank, world_size;
  if (!reader.Int("step", 0, kMaxCount, record.step) ||
      !reader.Int("rank", false, 0, kMaxSize, rank) ||
      !reader.Int("world_size", false, 1, kMaxSize, world_size) ||
      !reader.Int("ga_steps", 1, kMaxSize, record.ga_steps) ||
      !reader.Int("micro_batch_size", 1, kMaxSize, record.micro_batch_size) ||
      !reader.Number("loss", true, loss) || !reader.Number("grad_norm", false, record.grad_norm) ||
      !reader.Int("tokens", false, 0, kMaxCount, record.tokens) ||
      !reader.Int("vocab_size", false, 2, kMaxSize, record.vocab_size) ||
      !reader.Number("lr", false, record.lr) ||
      !reader.Number("ref_loss", false, record.ref_loss) ||
      !reader.Int("nonfinite_grads", false, 0, kMaxCount, record.nonfinite_grads) ||
      !reader.FiniteNumber("time", record.time)) {
    return reader.error();
  }
  record.loss = *loss;
  record.rank = rank.value_or(0);
  record.world_size = world_size.value_or(1);
  if (record.rank >= record.world_size) {
    return RecordError{index, "rank",
                       "rank must be < world_size, but got rank " + std::to_string(record.rank) +
                           " with world_size " + std::to_string(record.world_size)};
  }
  if (const json* micro = reader.Find("micro")) {
    RecordError error;
    if (!ReadMicro(*micro, index, record.micro, error)) return error;
  }
  if (const json* guard = reader.Find("guard")) {
    if (auto parsed = ParseGuardAction(*guard, index); !parsed) return parsed.error();
  }
  for (const auto& [key, value] : object.items()) {
    bool known = false;
    for (std::string_view field : kKnownFields) known = known || key == field;
    if (!known) record.extra[key] = value;
  }
  return record;
}

std::span<const std::string_view> KnownFieldNames() { return kKnownFields; }

Result<GuardAction, RecordError> ParseGuardAction(const json& value, std::size_t index) {
  if (!value.is_object()) {
    return RecordError{index, "guard",
                       "guard must be an object {action, kind, severity, source, first_step, "
                       "...}, but got " +
                           Show(value)};
  }
  FieldReader reader(value, index, "guard.");
  GuardAction out;
  std::optional<std::int64_t> first_step;
  std::optional<double> lr_factor;
  if (!reader.String("action", true, 16, out.action) ||
      !reader.String("kind", true, 64, out.kind) ||
      !reader.String("severity", true, 16, out.severity) ||
      !reader.String("source", true, 16, out.source) ||
      !reader.Int("first_step", true, 0, kMaxCount, first_step) ||
      !reader.Int("episode", false, 1, kMaxCount, out.episode) ||
      !reader.Int("seen_through", false, 0, kMaxCount, out.seen_through) ||
      !reader.Int("rollback_to", false, 0, kMaxCount, out.rollback_to) ||
      !reader.FiniteNumber("lr_factor", lr_factor) ||
      !reader.String("message", false, 1000, out.message, /*allow_empty=*/true)) {
    return reader.error();
  }
  out.first_step = *first_step;
  out.lr_factor = lr_factor;
  bool known_action = false;
  for (std::string_view name : kGuardActionNames) known_action = known_action || out.action == name;
  if (!known_action) {
    return RecordError{index, "guard.action",
                       "guard.action must be one of warn, lower_lr, skip_step, rollback, stop, "
                       "but got \"" +
                           out.action + "\""};
  }
  if (out.severity != "warning" && out.severity != "critical") {
    return RecordError{
        index, "guard.severity",
        "guard.severity must be \"warning\" or \"critical\", but got \"" + out.severity + "\""};
  }
  if (out.source != "local" && out.source != "server") {
    return RecordError{
        index, "guard.source",
        "guard.source must be \"local\" or \"server\", but got \"" + out.source + "\""};
  }
  if (lr_factor && (*lr_factor <= 0 || *lr_factor > 1)) {
    return RecordError{index, "guard.lr_factor",
                       "guard.lr_factor must be in (0, 1], but got " + Show(value["lr_factor"])};
  }
  return out;
}

Result<StepRecord, RecordError> ParseRecordText(std::string_view text, std::size_t index) {
  if (std::optional<JsonTextProblem> problem = CheckJsonText(text)) {
    return RecordError{index, "", problem->message};
  }
  json object;
  try {
    object = ParseCheckedJsonText(text);
  } catch (const json::exception& e) {
    return RecordError{index, "", std::string("malformed JSON: ") + e.what()};
  }
  return ParseRecord(object, index);
}

Result<std::vector<StepRecord>, RecordError> ParseBatch(std::string_view body, BodyFormat format) {
  std::vector<StepRecord> records;
  if (format == BodyFormat::kJson) {
    if (std::optional<JsonTextProblem> problem = CheckJsonText(body)) {
      return RecordError{problem->element, "", problem->message};
    }
    json document;
    try {
      document = ParseCheckedJsonText(body);
    } catch (const json::exception& e) {
      return RecordError{std::nullopt, "", std::string("malformed JSON: ") + e.what()};
    }
    if (!document.is_object() || !document.contains("records")) {
      return RecordError{std::nullopt, "records",
                         "the body must be an object {\"records\": [...]}"};
    }
    const json& array = document["records"];
    if (!array.is_array()) {
      return RecordError{std::nullopt, "records",
                         "records must be an array, but got " + Show(array)};
    }
    records.reserve(array.size());
    for (std::size_t i = 0; i < array.size(); ++i) {
      auto parsed = ParseRecord(array[i], i);
      if (!parsed) return parsed.error();
      records.push_back(std::move(parsed).value());
    }
    return records;
  }

  std::optional<RecordError> failure;
  ForEachLine(body, [&](std::string_view line, std::size_t line_number) {
    auto parsed = ParseRecordText(line, records.size());
    if (!parsed) {
      RecordError error = parsed.error();
      error.message = "line " + std::to_string(line_number) + ": " + error.message;
      failure = std::move(error);
      return false;
    }
    records.push_back(std::move(parsed).value());
    return true;
  });
  if (failure) return *failure;
  return records;
}

std::string ToNdjson(const std::vector<StepRecord>& records) {
  std::string out;
  for (const StepRecord& record : records) {
    out += CanonicalJson(record);
    out += '\n';
  }
  return out;
}

}  // namespace lossguard::wire
