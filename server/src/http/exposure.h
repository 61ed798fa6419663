#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "lossguard/client/url.h"
#include "lossguard/wire/result.h"

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
// holds a descriptor). kReservedDescriptors are left for the database, its WAL and the logs.
struct FileLimit {
  std::size_t soft = 0;
  std::size_t hard = 0;
};
inline constexpr std::size_t kReservedDescriptors = 64;
FileLimit RaiseFileLimit();

}  // namespace lossguard::http
