#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "lossguard/base/result.h"
#include "lossguard/client/url.h"

namespace lossguard::http {

// Refuses to expose an unauthenticated server: without a token, only loopback addresses
// (127.0.0.0/8, ::1) may be listened on. The error says how to fix it.
Status CheckExposure(const client::HostPort& listen, const std::string& token);

// A warning for a server listening beyond loopback in plain HTTP: the bearer tokens and the
// records cross the network in clear text. nullopt on loopback or with TLS.
std::optional<std::string> PlaintextWarning(const client::HostPort& listen, bool tls);

// Whether an address is loopback, IPv4-mapped IPv6 loopback (::ffff:127.0.0.1) included.
bool IsLoopback(const std::string& host);

// The process's open-file limit after raising the soft limit to the hard one (each connection
// holds a descriptor).
struct FileLimit {
  std::size_t soft = 0;
  std::size_t hard = 0;
};
FileLimit RaiseFileLimit();

// Descriptors never given to connections: three (database, WAL, shared memory) for each database
// connection that can be open at once (one per thread that reads or writes the store), and a base
// for the logs, the listener, the event loop, webhook sockets and the certificate files.
std::size_t ReservedDescriptors(std::size_t store_threads);
// At most this many 503 answers to connections beyond the cap are in flight at once (each holds a
// descriptor for up to a second); past it a connection is closed without one.
inline constexpr std::size_t kMaxRefusalDescriptors = 64;

// How the open-file limit is shared out. `sessions` is --max-connections, lowered when the limit
// cannot hold that many next to the reserve and the refusals; `warning` says so. sessions == 0:
// the limit is too low to serve at all and `warning` says what to raise.
struct ConnectionBudget {
  std::size_t sessions = 0;
  std::size_t refusals = 0;
  std::optional<std::string> warning;
};
ConnectionBudget BudgetConnections(std::size_t max_connections, FileLimit files,
                                   std::size_t reserved);

}  // namespace lossguard::http
