#pragma once

#include <string>

#include "store/types.h"

namespace lossguard::testing {

// An open alert for `run`; tests change what they need. The run must exist before it is inserted.
store::Alert MakeAlert(const std::string& run, analyzers::Kind kind, analyzers::Severity severity,
                       const std::string& message);

}  // namespace lossguard::testing
