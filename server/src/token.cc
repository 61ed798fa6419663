#include "token.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace lossguard {

namespace {
std::string Trim(std::string text) {
  const char* space = " \t\r\n";
  std::size_t first = text.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(space) - first + 1);
}
}  // namespace

Result<Secret, std::string> ReadSecretFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::string(flag + " " + path + ": " + std::strerror(errno));
  std::stringstream contents;
  contents << in.rdbuf();
  std::string secret = Trim(contents.str());
  if (secret.empty()) return std::string(flag + " " + path + " is empty");
  return Secret{secret};
}

Result<std::optional<std::string>, std::string> LoadToken(
    const std::optional<std::string>& token_file, const char* environment_value) {
  if (token_file) {
    auto token = ReadSecretFile("--token-file", *token_file);
    if (!token) return token.error();
    return std::optional<std::string>(token.value().text);
  }
  if (environment_value != nullptr) {
    std::string token = Trim(environment_value);
    if (token.empty()) return std::string("LOSSGUARD_TOKEN is set but empty");
    return std::optional<std::string>(token);
  }
  return std::optional<std::string>();
}

std::optional<std::string> WeakTokenWarning(const std::string& token) {
  std::set<char> distinct(token.begin(), token.end());
  if (token.size() >= kMinTokenLength && distinct.size() >= 8) return std::nullopt;
  return "the token is easy to guess (" + std::to_string(token.size()) + " characters, " +
         std::to_string(distinct.size()) + " distinct); use at least " +
         std::to_string(kMinTokenLength) +
         " random characters, e.g. from `openssl rand -hex 32` or `head -c 32 /dev/urandom | "
         "base64`";
}

}  // namespace lossguard
