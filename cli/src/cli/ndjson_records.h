#pragma once

#include <cstddef>
#include <functional>
#include <istream>
#include <optional>
#include <string>

#include "lossguard/base/result.h"
#include "lossguard/wire/step_record.h"

namespace lossguard::cli {

// Reads NDJSON from `in` a line at a time (blank lines skipped), parses each line as a v1 record
// and calls on_record(line, record, line_number); stops early when it returns false. The error is
// the first invalid line's, "FILE:LINE: field: what"; ok when every line read was valid.
Status ForEachRecordLine(std::istream& in, const std::string& file,
                         const std::function<bool(const std::string& line, wire::StepRecord& record,
                                                  std::size_t line_number)>& on_record);

}  // namespace lossguard::cli
