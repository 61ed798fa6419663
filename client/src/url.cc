#include "lossguard/client/url.h"

#include <cctype>
#include <charconv>

namespace lossguard::client {

Result<HostPort, std::string> ParseHostPort(std::string_view text) {
  std::string_view host;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos)
      return std::string("missing ']' in \"" + std::string(text) + "\"");
    host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return std::string("expected HOST:PORT, but got \"" + std::string(text) + "\"");
    }
    host = text.substr(0, colon);
    rest = text.substr(colon);
    if (host.find(':') != std::string_view::npos) {
      return std::string("IPv6 addresses must be in brackets, e.g. [::1]:8080, but got \"" +
                         std::string(text) + "\"");
    }
  }
  if (host.empty()) return std::string("empty host in \"" + std::string(text) + "\"");
  if (rest.size() < 2 || rest.front() != ':') {
    return std::string("expected HOST:PORT, but got \"" + std::string(text) + "\"");
  }
  std::string_view port_text = rest.substr(1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return std::string("port must be an integer in 0-65535, but got \"" + std::string(port_text) +
                       "\"");
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(port)};
}

Result<HttpUrl, std::string> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  const bool tls = url.substr(0, kHttps.size()) == kHttps;
  if (!tls && url.substr(0, kHttp.size()) != kHttp) {
    return std::string("URL must start with http:// or https://, but got \"" + std::string(url) +
                       "\"");
  }
  std::string_view rest = url.substr(tls ? kHttps.size() : kHttp.size());
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string base_path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
  if (authority.find('@') != std::string_view::npos) {
    return std::string("bad URL \"" + std::string(url) +
                       "\": credentials in a URL are not supported (use a token file)");
  }

  bool has_port = !authority.empty() &&
                  (authority.front() == '[' ? authority.find("]:") != std::string_view::npos
                                            : authority.find(':') != std::string_view::npos);
  std::string with_port =
      has_port ? std::string(authority) : std::string(authority) + (tls ? ":443" : ":80");
  auto endpoint = ParseHostPort(with_port);
  if (!endpoint) return std::string("bad URL \"" + std::string(url) + "\": " + endpoint.error());
  return HttpUrl{endpoint.value(), base_path, tls};
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace lossguard::client
