#pragma once

#include <nlohmann/json.hpp>

#include "store/types.h"

namespace lossguard::api {

// The JSON shapes of the REST API (documented in README.md). Non-finite numbers are written as the
// wire format's strings "NaN", "Infinity", "-Infinity".
nlohmann::json RunToJson(const store::RunSummary& run);
nlohmann::json AlertToJson(const store::Alert& alert);
nlohmann::json DownsampledToJson(const store::DownsampledSeries& series);

}  // namespace lossguard::api
