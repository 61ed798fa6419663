#pragma once

#include <filesystem>
#include <string>

namespace lossguard::testing {

// A small tmpfs mounted for a test (root only: tests skip when mounted() is false), unmounted on
// destruction. For what happens when a disk fills up.
class TinyFileSystem {
 public:
  TinyFileSystem(const std::filesystem::path& at, const std::string& size);
  ~TinyFileSystem();
  TinyFileSystem(const TinyFileSystem&) = delete;
  TinyFileSystem& operator=(const TinyFileSystem&) = delete;

  bool mounted() const { return mounted_; }
  // Writes a file until the file system has no space left.
  void Fill();
  void Free();

 private:
  std::filesystem::path at_;
  bool mounted_ = false;
};

}  // namespace lossguard::testing
