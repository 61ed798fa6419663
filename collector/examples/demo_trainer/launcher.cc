#include "launcher.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace lossguard::demo {

int LaunchRanks(int argc, char** argv, std::int64_t world_size) {
  std::string store_file = "/tmp/lossguard-demo-" + std::to_string(getpid()) + ".port";
  std::vector<pid_t> children;
  for (std::int64_t rank = 0; rank < world_size; ++rank) {
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      std::vector<std::string> args(argv, argv + argc);
      args.insert(args.end(), {"--rank", std::to_string(rank), "--store-file", store_file});
      std::vector<char*> raw;
      for (auto& arg : args) raw.push_back(arg.data());
      raw.push_back(nullptr);
      execv("/proc/self/exe", raw.data());
      std::perror("execv");
      _exit(127);
    }
    children.push_back(pid);
  }
  int failures = 0;
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::remove(store_file.c_str());
  return failures == 0 ? 0 : 1;
}

}  // namespace lossguard::demo
