#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "lossguard/analyzers/analyzer_options.h"
#include "lossguard/base/result.h"

namespace lossguard {

// Adds every analyzer threshold as a flag (group "Analyzers"), each with its default and why, to
// lossguard-server and `lossguard analyze`, so that both judge a run the same way.
void AddAnalyzerFlags(CLI::App& app, analyzers::AnalyzerOptions& options);

// Why a combination of thresholds cannot work (e.g. a detector that could never judge), if it
// cannot.
Status CheckAnalyzerOptions(const analyzers::AnalyzerOptions& options);

}  // namespace lossguard
