#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "lossguard/base/result.h"

namespace lossguard {

// A secret kept in a file (a token, a database password): its contents without surrounding
// whitespace. An error naming `flag` and the path when it cannot be read or is empty.
struct Secret {
  std::string text;
};
Result<Secret, std::string> ReadSecretFile(const std::string& flag, const std::string& path);

// The bearer token from --token-file (preferred) or the LOSSGUARD_TOKEN environment value.
// Returns nullopt when neither is given; an error when the file cannot be read or holds no token.
// Surrounding whitespace (a trailing newline) is not part of the token.
Result<std::optional<std::string>, std::string> LoadToken(
    const std::optional<std::string>& token_file, const char* environment_value);

// A warning when the token is easy to guess (shorter than kMinTokenLength characters, or made of
// fewer than 8 distinct characters); nullopt for a token that looks random enough. The server still
// starts: the operator decides.
inline constexpr std::size_t kMinTokenLength = 16;
std::optional<std::string> WeakTokenWarning(const std::string& token);

}  // namespace lossguard
