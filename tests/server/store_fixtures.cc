#include "server/store_fixtures.h"

namespace lossguard::testing {

store::Alert MakeAlert(const std::string& run, analyzers::Kind kind, analyzers::Severity severity,
                       const std::string& message) {
  store::Alert alert;
  alert.run = run;
  alert.kind = kind;
  alert.severity = severity;
  alert.state = "open";
  alert.message = message;
  return alert;
}

}  // namespace lossguard::testing
