#pragma once

#include <filesystem>
#include <string>

#include "lossguard/wire/step_record.h"
#include "store/types.h"

namespace lossguard::testing {

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path File(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A valid record with the required fields set; tests change what they need.
wire::StepRecord MakeRecord(const std::string& run, std::int64_t step, double loss,
                            std::int64_t rank = 0, std::int64_t world_size = 1);

// An open alert for `run`; tests change what they need. The run must exist before it is inserted.
store::Alert MakeAlert(const std::string& run, const std::string& kind, const std::string& severity,
                       const std::string& message);

}  // namespace lossguard::testing
