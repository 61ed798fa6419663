#pragma once

// CPU time spent by a process and all its descendants, from /proc (Linux): what a benchmark charges
// to lossguard-server and to the PostgreSQL server (the postmaster and its backends) per record.
#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace lossguard::bench {

// utime + stime of `root` and every live descendant, in seconds. Descendants that exited are not
// counted: sample while the processes of interest still run.
inline double ProcessTreeCpuSeconds(pid_t root) {
  std::map<pid_t, pid_t> parent;
  std::map<pid_t, double> cpu;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t close = text.rfind(')');  // the command may contain spaces and parentheses
    if (close == std::string::npos) continue;
    std::istringstream fields(text.substr(close + 2));
    std::vector<std::string> f;
    for (std::string field; fields >> field;) f.push_back(field);
    if (f.size() < 13) continue;
    const pid_t pid = std::stoi(name);
    parent[pid] = std::stoi(f[1]);                             // field 4: ppid
    cpu[pid] = (std::stod(f[11]) + std::stod(f[12])) / ticks;  // fields 14, 15: utime, stime
  }
  double total = 0;
  for (const auto& [pid, seconds] : cpu) {
    for (pid_t p = pid; p > 1; p = parent.count(p) ? parent[p] : 0) {
      if (p == root) {
        total += seconds;
        break;
      }
    }
  }
  return total;
}

}  // namespace lossguard::bench
