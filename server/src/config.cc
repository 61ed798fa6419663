#include "config.h"

#include <sys/resource.h>

#include <boost/asio/ip/address.hpp>
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

std::optional<std::string> CheckExposure(const client::HostPort& listen, const std::string& token) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(listen.host, ec);
  if (ec)
    return "--listen host must be an IP address (e.g. 127.0.0.1 or [::1]), but got \"" +
           listen.host + "\"";
  if (token.empty() && !IsLoopback(listen.host)) {
    return "refusing to listen on non-loopback address " + listen.host +
           " without a token: anyone who can reach it could write records. Set --token-file or "
           "LOSSGUARD_TOKEN, or listen on 127.0.0.1";
  }
  return std::nullopt;
}

bool IsLoopback(const std::string& host) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  if (ec) return false;
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6())
        .is_loopback();
  }
  return address.is_loopback();
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

FileLimit RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return {};
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return {static_cast<std::size_t>(limit.rlim_cur), static_cast<std::size_t>(limit.rlim_max)};
}

}  // namespace lossguard
