#include "cli/ndjson_records.h"

#include "lossguard/wire/record_codec.h"

namespace lossguard::cli {

Status ForEachRecordLine(
    std::istream& in, const std::string& file,
    const std::function<bool(const std::string&, wire::StepRecord&, std::size_t)>& on_record) {
  std::string line;
  std::size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto record = wire::ParseRecordText(line, 0);
    if (!record) {
      return Status::Error(
          file + ":" + std::to_string(line_number) + ": " +
          wire::RecordError{std::nullopt, record.error().field, record.error().message}.Describe());
    }
    if (!on_record(line, record.value(), line_number)) break;
  }
  return Status::Ok();
}

}  // namespace lossguard::cli
