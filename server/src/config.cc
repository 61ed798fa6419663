#include "config.h"

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
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

Result<std::optional<std::string>, std::string> LoadToken(
    const std::optional<std::string>& token_file, const char* environment_value) {
  if (token_file) {
    std::ifstream in(*token_file);
    if (!in) return std::string("--token-file " + *token_file + ": " + std::strerror(errno));
    std::stringstream contents;
    contents << in.rdbuf();
    std::string token = Trim(contents.str());
    if (token.empty()) return std::string("--token-file " + *token_file + " is empty");
    return std::optional<std::string>(token);
  }
  if (environment_value != nullptr) {
    std::string token = Trim(environment_value);
    if (token.empty()) return std::string("LOSSGUARD_TOKEN is set but empty");
    return std::optional<std::string>(token);
  }
  return std::optional<std::string>();
}

std::optional<std::string> CheckExposure(const wire::HostPort& listen, const std::string& token) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(listen.host, ec);
  if (ec)
    return "--listen host must be an IP address (e.g. 127.0.0.1 or [::1]), but got \"" +
           listen.host + "\"";
  if (token.empty() && !address.is_loopback()) {
    return "refusing to listen on non-loopback address " + listen.host +
           " without a token: anyone who can reach it could write records. Set --token-file or "
           "LOSSGUARD_TOKEN, or listen on 127.0.0.1";
  }
  return std::nullopt;
}

}  // namespace lossguard
