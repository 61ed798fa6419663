#include "support/temp_dir.h"

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

}  // namespace lossguard::testing
