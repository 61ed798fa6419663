#include "server/test_db.h"

#include <cstdlib>
#include <stdexcept>

namespace lossguard::testing {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "lossguard-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;  // best effort: a leftover temp dir must not fail a test
  std::filesystem::remove_all(path_, ignored);
}

wire::StepRecord MakeRecord(const std::string& run, std::int64_t step, double loss,
                            std::int64_t rank, std::int64_t world_size) {
  wire::StepRecord r;
  r.run = run;
  r.step = step;
  r.rank = rank;
  r.world_size = world_size;
  r.ga_steps = 4;
  r.micro_batch_size = 2;
  r.loss = loss;
  return r;
}

store::Alert MakeAlert(const std::string& run, const std::string& kind, const std::string& severity,
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
