#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lossguard/wire/result.h"

namespace lossguard::client {

// A host and port: "127.0.0.1:8080", "[::1]:8080", "localhost:80". The host keeps no brackets.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};

// Parses "HOST:PORT" (IPv6 literals in brackets). Port 0 is allowed (ephemeral). The error says
// what is wrong with the text.
Result<HostPort, std::string> ParseHostPort(std::string_view text);

// An http:// URL: "http://127.0.0.1:8080" or "http://host:8080/prefix". https is not supported.
struct HttpUrl {
  HostPort endpoint;      // port defaults to 80
  std::string base_path;  // "" or "/prefix" without a trailing slash
};

Result<HttpUrl, std::string> ParseHttpUrl(std::string_view url);

}  // namespace lossguard::client
