#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lossguard::notify {

// Who holds a notification target's lease, as written in the outbox: the server's name (host name
// and listening address) and the process behind it (pid, its pid namespace, and its start time in
// clock ticks since boot, so that a reused pid is not taken for the holder).
struct LeaseOwner {
  std::string host;
  std::string address;  // "127.0.0.1:8080"
  std::int64_t pid = 0;
  std::uint64_t pid_namespace = 0;  // inode of /proc/PID/ns/pid; 0 when unknown
  std::uint64_t start_ticks = 0;    // /proc/PID/stat field 22; 0 when unknown
};

// "HOST/ADDRESS pid=N pidns=N start=N": readable in the database and parsed back.
std::string FormatLeaseOwner(const LeaseOwner& owner);
// nullopt for anything FormatLeaseOwner did not write (an older server's plain "HOST/ADDRESS").
std::optional<LeaseOwner> ParseLeaseOwner(std::string_view text);

// This process, listening on `address`.
LeaseOwner ThisProcess(std::string host, std::string address);

// Whether a lease written by `holder` can be taken back at once by `self` (a server starting)
// instead of waiting for it to expire: only when the holder certainly is not running. That is known
// on the same host, when the holder listened on the same address (two running servers cannot) or
// ran in the same pid namespace as a process that is gone (no such pid, or a pid started since).
// Elsewhere, or unparseable: false, and the lease runs out.
bool HolderIsGone(const LeaseOwner& holder, const LeaseOwner& self);
// The same for a holder's text; a plain "HOST/ADDRESS" (older servers) is compared by name.
bool HolderIsGone(std::string_view holder, const LeaseOwner& self);

}  // namespace lossguard::notify
