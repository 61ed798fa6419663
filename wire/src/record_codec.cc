#include "lossguard/wire/record_codec.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "field_reader.h"
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

bool IsRunChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

bool ReadMicro(const json& array, std::size_t index, std::vector<MicroBatch>& out,
               RecordError& error) {
  FieldReader top(json::object(), index);
  if (!array.is_array()) {
    top.Fail("micro",
             "micro must be an array of {loss, tokens, loss_sum}, but got " + ShowJson(array));
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
      error = RecordError{index, "micro[" + std::to_string(i) + "]",
                          "micro[" + std::to_string(i) +
                              "] must be an object {loss, tokens, loss_sum}, but got " +
                              ShowJson(entry)};
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
    return RecordError{index, "", "a record must be a JSON object, but got " + ShowJson(object)};
  }
  FieldReader reader(object, index);
  StepRecord record;

  const json* run = reader.Find("run");
  if (run == nullptr)
    return RecordError{index, "run", "run is required (a string of 1-128 [A-Za-z0-9._:-])"};
  if (!run->is_string())
    return RecordError{index, "run", "run must be a string, but got " + ShowJson(*run)};
  record.run = run->get<std::string>();
  if (record.run.empty() || record.run.size() > kMaxRunLength) {
    return RecordError{
        index, "run",
        "run must be 1-128 characters long, but got " + std::to_string(record.run.size())};
  }
  for (char c : record.run) {
    if (!IsRunChar(c)) {
      return RecordError{index, "run",
                         "run may contain only [A-Za-z0-9._:-], but got " + ShowJson(*run)};
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
                           ShowJson(value)};
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
    return RecordError{
        index, "guard.lr_factor",
        "guard.lr_factor must be in (0, 1], but got " + ShowJson(value["lr_factor"])};
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
                         "records must be an array, but got " + ShowJson(array)};
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
