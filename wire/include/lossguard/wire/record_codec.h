#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/base/result.h"
#include "lossguard/wire/guard_action.h"
#include "lossguard/wire/step_record.h"

namespace lossguard::wire {

// Why a batch was refused. `record` is the 0-based index of the offending record (for NDJSON, the
// record on line record + 1), absent when the batch as a whole is malformed. `field` is the JSON
// path inside the record ("ga_steps", "micro[2].tokens"), empty when not about one field.
struct RecordError {
  std::optional<std::size_t> record;
  std::string field;
  std::string message;  // names the value that was wrong, e.g. "ga_steps must be >= 1, but got 0"

  // One line for logs and CLIs: "records[3].ga_steps: ga_steps must be >= 1, but got 0".
  std::string Describe() const;
};

enum class BodyFormat {
  kJson,    // {"records": [ ... ]}
  kNdjson,  // one record object per line; blank lines are skipped
};

// Maps a Content-Type header value (parameters such as charset allowed) to a body format.
// nullopt for media types wire format v1 does not accept.
std::optional<BodyFormat> BodyFormatFromContentType(std::string_view content_type);

// The field names of wire format v1. A record's other names are unknown fields, kept as given
// (StepRecord::extra).
std::span<const std::string_view> KnownFieldNames();

// Validates one record object against wire format v1. Never throws on bad input; the error names
// the field and the value. `index` is copied into the error.
Result<StepRecord, RecordError> ParseRecord(const nlohmann::json& object, std::size_t index);

// Validates a record's "guard" field (GuardAction); errors name "guard.<field>".
Result<GuardAction, RecordError> ParseGuardAction(const nlohmann::json& value,
                                                  std::size_t index = 0);

// Parses one record from JSON text (a line of NDJSON) and validates it; bare NaN / Infinity tokens
// are accepted as in ParseBatch.
Result<StepRecord, RecordError> ParseRecordText(std::string_view text, std::size_t index);

// Parses and validates a whole batch. All-or-nothing: on the first invalid record the whole batch
// is refused. Bare NaN / Infinity / -Infinity tokens (as Python's json module writes them) are
// accepted as if they were the wire format's strings.
Result<std::vector<StepRecord>, RecordError> ParseBatch(std::string_view body, BodyFormat format);

// Serialises records as an NDJSON body (one canonical record per line), the inverse of ParseBatch.
std::string ToNdjson(const std::vector<StepRecord>& records);

}  // namespace lossguard::wire
