#pragma once

#include <nlohmann/json.hpp>

#include "store/types.h"

namespace lossguard::api {

// The JSON shapes of the REST API (documented in README.md). Non-finite numbers are written as the
// wire format's strings "NaN", "Infinity", "-Infinity".
nlohmann::json RunToJson(const store::RunSummary& run);
// An alert as the REST API shows it, with the guard actions taken on it ("actions").
nlohmann::json AlertToJson(const store::Alert& alert);
// {"run", "step", "rank", "received_at", and the record's guard field: "action", "kind", ...}.
nlohmann::json GuardActionToJson(const store::GuardActionRow& row);
// The ingest acknowledgement's "verdicts": {run: {"through_step", "open": [{"id", "kind",
// "severity", "rank", "first_step", "last_step", "acked", "message"}]}}.
nlohmann::json VerdictsToJson(
    const std::map<std::string, store::IngestResult::RunVerdicts>& verdicts);
nlohmann::json DownsampledToJson(const store::DownsampledSeries& series);

}  // namespace lossguard::api
