#pragma once

#include <optional>
#include <string>

#include "lossguard/wire/result.h"
#include "lossguard/wire/url.h"

namespace lossguard {

// The bearer token from --token-file (preferred) or the LOSSGUARD_TOKEN environment value.
// Returns nullopt when neither is given; an error when the file cannot be read or holds no token.
// Surrounding whitespace (a trailing newline) is not part of the token.
Result<std::optional<std::string>, std::string> LoadToken(
    const std::optional<std::string>& token_file, const char* environment_value);

// Refuses to expose an unauthenticated server: without a token, only loopback addresses
// (127.0.0.0/8, ::1) may be listened on. The error says how to fix it.
std::optional<std::string> CheckExposure(const wire::HostPort& listen, const std::string& token);

}  // namespace lossguard
