#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "lossguard/client/url.h"
#include "lossguard/wire/result.h"

namespace lossguard {

// The bearer token from --token-file (preferred) or the LOSSGUARD_TOKEN environment value.
// Returns nullopt when neither is given; an error when the file cannot be read or holds no token.
// Surrounding whitespace (a trailing newline) is not part of the token.
Result<std::optional<std::string>, std::string> LoadToken(
    const std::optional<std::string>& token_file, const char* environment_value);

// Refuses to expose an unauthenticated server: without a token, only loopback addresses
// (127.0.0.0/8, ::1) may be listened on. The error says how to fix it.
std::optional<std::string> CheckExposure(const client::HostPort& listen, const std::string& token);

// Whether an address is loopback, IPv4-mapped IPv6 loopback (::ffff:127.0.0.1) included.
bool IsLoopback(const std::string& host);

// A warning when the token is easy to guess (shorter than kMinTokenLength characters, or made of
// fewer than 8 distinct characters); nullopt for a token that looks random enough. The server still
// starts: the operator decides.
inline constexpr std::size_t kMinTokenLength = 16;
std::optional<std::string> WeakTokenWarning(const std::string& token);

// The process's open-file limit after raising the soft limit to the hard one (each connection
// holds a descriptor). kReservedDescriptors are left for the database, its WAL and the logs.
struct FileLimit {
  std::size_t soft = 0;
  std::size_t hard = 0;
};
inline constexpr std::size_t kReservedDescriptors = 64;
FileLimit RaiseFileLimit();

}  // namespace lossguard
