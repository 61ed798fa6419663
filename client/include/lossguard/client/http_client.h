#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lossguard::client {

struct HttpClientOptions {
  std::string
      token;  // the server's write token, sent as "Authorization: Bearer ..." when not empty
  std::chrono::milliseconds timeout{30'000};  // per request: connect, write and read together
  // https:// only: the PEM file of the certificate authorities to trust instead of the system's
  // (/etc/ssl/certs). The server's certificate is always verified, and must name the URL's host.
  std::string ca_file;
};

// Extra request headers (name, value).
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  unsigned status = 0;
  std::string body;
  std::string content_type;
  std::string retry_after;  // the Retry-After header, if the server sent one
};

// A transport failure (cannot resolve, connect, send or read; timeout; a TLS handshake that fails,
// e.g. a certificate that does not verify). An HTTP error status is not
// an HttpError: it is a response.
class HttpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A blocking HTTP/1.1 client for one server (http:// or https://), keeping its connection alive
// between requests.
// Not thread-safe: use one client per thread. Requests that fail on a reused connection (the server
// closed it while idle) are retried once on a new connection, which is safe for lossguard's API
// because every write is idempotent.
class HttpClient {
 public:
  // `server_url` is "http[s]://host[:port][/prefix]"; throws std::invalid_argument if it is not,
  // or if options.ca_file cannot be loaded.
  explicit HttpClient(std::string_view server_url, HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // `target` is the path and query, e.g. "/api/v1/runs"; it is appended to the URL's prefix.
  // Throws HttpError on transport failure.
  HttpResponse Get(std::string_view target);
  HttpResponse Post(std::string_view target, std::string body, std::string_view content_type);
  HttpResponse Request(std::string_view method, std::string_view target, std::string body,
                       std::string_view content_type, const HttpHeaders& headers = {});

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lossguard::client
