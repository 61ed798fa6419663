#include "support/tiny_file_system.h"

#include <chrono>
#include <fstream>

#include "support/processes.h"

namespace lossguard::testing {

TinyFileSystem::TinyFileSystem(const std::filesystem::path& at, const std::string& size) : at_(at) {
  std::filesystem::create_directories(at);
  mounted_ = RunCommand({"/bin/mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", at.string()},
                        std::chrono::seconds(10))
                 .exit_code == 0;
}

TinyFileSystem::~TinyFileSystem() {
  if (mounted_) RunCommand({"/bin/umount", "-l", at_.string()}, std::chrono::seconds(10));
}

void TinyFileSystem::Fill() {
  std::ofstream fill(at_ / "fill", std::ios::binary | std::ios::app);
  std::string block(4096, 'x');
  for (int i = 0;
       i < 100'000 && fill.write(block.data(), static_cast<std::streamsize>(block.size())); ++i) {
  }
}

void TinyFileSystem::Free() {
  std::error_code ignored;  // nothing to free when Fill wrote nothing
  std::filesystem::remove(at_ / "fill", ignored);
}

}  // namespace lossguard::testing
