#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lossguard/base/result.h"

namespace lossguard::client {

// A host and port: "127.0.0.1:8080", "[::1]:8080", "localhost:80". The host keeps no brackets.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};

// Parses "HOST:PORT" (IPv6 literals in brackets). Port 0 is allowed (ephemeral). The error says
// what is wrong with the text.
Result<HostPort, std::string> ParseHostPort(std::string_view text);

// An http:// or https:// URL: "http://127.0.0.1:8080", "https://host/prefix". The path may hold a
// query (webhook URLs do); user:password@ is refused (secrets go in files, not URLs on a command
// line).
struct HttpUrl {
  HostPort endpoint;      // port defaults to 80, or 443 for https
  std::string base_path;  // "" or "/prefix" without a trailing slash
  bool tls = false;       // https://
};

Result<HttpUrl, std::string> ParseHttpUrl(std::string_view url);

// `text` with every byte but RFC 3986's unreserved ones (letters, digits, - . _ ~) as %XX: safe in
// a path segment or a query value.
std::string PercentEncode(std::string_view text);

}  // namespace lossguard::client
