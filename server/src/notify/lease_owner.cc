#include "notify/lease_owner.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace lossguard::notify {

namespace {

std::string Name(const LeaseOwner& owner) { return owner.host + "/" + owner.address; }

std::uint64_t PidNamespace(const std::string& pid) {
  struct stat info {};
  if (stat(("/proc/" + pid + "/ns/pid").c_str(), &info) != 0) return 0;
  return static_cast<std::uint64_t>(info.st_ino);
}

// Field 22 of /proc/PID/stat; nullopt when there is no such process.
std::optional<std::uint64_t> StartTicks(const std::string& pid) {
  std::ifstream stat("/proc/" + pid + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const std::size_t name_end = text.rfind(')');  // the command name may hold spaces
  if (name_end == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(name_end + 2));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index == 22) return std::stoull(field);
  }
  return std::nullopt;
}

}  // namespace

std::string FormatLeaseOwner(const LeaseOwner& owner) {
  return Name(owner) + " pid=" + std::to_string(owner.pid) +
         " pidns=" + std::to_string(owner.pid_namespace) +
         " start=" + std::to_string(owner.start_ticks);
}

std::optional<LeaseOwner> ParseLeaseOwner(std::string_view text) {
  std::istringstream fields{std::string(text)};
  std::string name, pid, pid_namespace, start, rest;
  if (!(fields >> name >> pid >> pid_namespace >> start) || (fields >> rest)) return std::nullopt;
  const std::size_t slash = name.find('/');
  if (slash == std::string::npos || !pid.starts_with("pid=") ||
      !pid_namespace.starts_with("pidns=") || !start.starts_with("start=")) {
    return std::nullopt;
  }
  LeaseOwner owner{name.substr(0, slash), name.substr(slash + 1)};
  try {
    owner.pid = std::stoll(pid.substr(4));
    owner.pid_namespace = std::stoull(pid_namespace.substr(6));
    owner.start_ticks = std::stoull(start.substr(6));
  } catch (const std::exception&) {  // out of range or not a number: not one of ours
    return std::nullopt;
  }
  return owner;
}

LeaseOwner ThisProcess(std::string host, std::string address) {
  LeaseOwner self{std::move(host), std::move(address), static_cast<std::int64_t>(getpid())};
  self.pid_namespace = PidNamespace("self");
  self.start_ticks = StartTicks("self").value_or(0);
  return self;
}

bool HolderIsGone(const LeaseOwner& holder, const LeaseOwner& self) {
  if (holder.host != self.host) return false;
  if (holder.pid == self.pid && holder.pid_namespace == self.pid_namespace &&
      holder.start_ticks == self.start_ticks) {
    return false;  // this very process
  }
  if (holder.address == self.address) return true;
  if (holder.pid_namespace == 0 || holder.pid_namespace != self.pid_namespace) return false;
  if (holder.start_ticks == 0) return false;
  const std::optional<std::uint64_t> running = StartTicks(std::to_string(holder.pid));
  return !running || *running != holder.start_ticks;
}

bool HolderIsGone(std::string_view holder, const LeaseOwner& self) {
  if (auto parsed = ParseLeaseOwner(holder)) return HolderIsGone(*parsed, self);
  return holder == Name(self);
}

}  // namespace lossguard::notify
