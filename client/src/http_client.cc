#include "lossguard/client/http_client.h"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <limits>
#include <optional>

#include "lossguard/client/url.h"

namespace lossguard::client {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {
// A client context that verifies the peer against `ca_file` (or the system's authorities).
ssl::context MakeTlsContext(const std::string& ca_file) {
  ssl::context context(ssl::context::tls_client);
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  context.set_verify_mode(ssl::verify_peer);
  beast::error_code ec;
  if (ca_file.empty()) {
    context.set_default_verify_paths(ec);
    if (ec)
      throw std::invalid_argument("cannot load the system's certificate authorities: " +
                                  ec.message());
  } else {
    context.load_verify_file(ca_file, ec);
    if (ec) {
      throw std::invalid_argument("cannot load certificate authorities from " + ca_file + ": " +
                                  ec.message());
    }
  }
  return context;
}

bool IsIpAddress(const std::string& host) {
  beast::error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}
}  // namespace

class HttpClient::Impl {
 public:
  Impl(HttpUrl url, HttpClientOptions options)
      : url_(std::move(url)), options_(std::move(options)) {
    if (url_.tls) tls_context_.emplace(MakeTlsContext(options_.ca_file));
  }

  HttpResponse Request(std::string_view method, std::string_view target, std::string body,
                       std::string_view content_type, const HttpHeaders& headers) {
    http::verb verb = http::string_to_verb(beast::string_view(method.data(), method.size()));
    if (verb == http::verb::unknown)
      throw std::invalid_argument("unknown HTTP method " + std::string(method));
    std::string path = url_.base_path + std::string(target);
    if (path.empty()) path = "/";
    http::request<http::string_body> request{verb, path, 11};
    request.set(http::field::host, url_.endpoint.host + ":" + std::to_string(url_.endpoint.port));
    request.set(http::field::user_agent, "lossguard/0.1");
    if (!options_.token.empty()) {
      request.set(http::field::authorization, "Bearer " + options_.token);
    }
    if (!content_type.empty())
      request.set(http::field::content_type,
                  beast::string_view(content_type.data(), content_type.size()));
    for (const auto& [name, value] : headers) request.set(name, value);
    request.body() = std::move(body);
    request.prepare_payload();
    request.keep_alive(true);

    bool reused = connected();
    beast::error_code ec = RoundTrip(request);
    if (ec && reused) {
      Close();
      ec = RoundTrip(request);
    }
    if (ec) {
      Close();
      throw HttpError(std::string(method) + " " + request.target().to_string() + " to " +
                      Describe() + " failed: " + ec.message());
    }
    http::response<http::string_body> response = response_->release();
    HttpResponse out;
    out.status = response.result_int();
    out.content_type = std::string(response[http::field::content_type]);
    out.body = std::move(response.body());
    out.retry_after = std::string(response[http::field::retry_after]);
    if (!response.keep_alive()) Close();
    return out;
  }

 private:
  using TlsStream = beast::ssl_stream<beast::tcp_stream>;

  std::string Describe() const {
    return std::string(url_.tls ? "https://" : "http://") + url_.endpoint.host + ":" +
           std::to_string(url_.endpoint.port);
  }

  bool connected() const { return plain_.has_value() || tls_.has_value(); }
  beast::tcp_stream& tcp() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }

  void Close() {
    if (connected()) {
      beast::error_code
          ignored;  // closing a socket the peer already closed is not an error to report
      tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
      tcp().socket().close(ignored);
    }
    plain_.reset();
    tls_.reset();
  }

  // Starts the write and then the read of one exchange on `stream`, each under the deadline.
  template <typename Stream>
  void Send(Stream& stream, http::request<http::string_body>& request, beast::error_code& result) {
    tcp().expires_after(options_.timeout);
    http::async_write(stream, request, [&](beast::error_code ec, std::size_t) {
      if (ec) {
        result = ec;
        return;
      }
      tcp().expires_after(options_.timeout);
      http::async_read(stream, buffer_, *response_,
                       [&](beast::error_code read_ec, std::size_t) { result = read_ec; });
    });
  }

  void Send(http::request<http::string_body>& request, beast::error_code& result) {
    if (tls_) {
      Send(*tls_, request, result);
    } else {
      Send(*plain_, request, result);
    }
  }

  // Runs connect (and the TLS handshake) if needed, write and read as async operations under one
  // deadline each, so that a blocking call still has a timeout.
  beast::error_code RoundTrip(http::request<http::string_body>& request) {
    beast::error_code result;
    ioc_.restart();
    response_.emplace();
    // Large step queries are legitimate; the caller chose them. A number, not boost::none: Boost
    // 1.74's parser compares the Content-Length with the optional limit, and any length is
    // "greater" than none when the header block arrives without body bytes ("body limit exceeded").
    response_->body_limit(std::numeric_limits<std::uint64_t>::max());
    buffer_.clear();
    if (!connected()) {
      if (url_.tls) {
        tls_.emplace(ioc_, *tls_context_);
        if (!IsIpAddress(url_.endpoint.host) &&
            !SSL_set_tlsext_host_name(tls_->native_handle(), url_.endpoint.host.c_str())) {
          return beast::error_code(static_cast<int>(::ERR_get_error()),
                                   net::error::get_ssl_category());
        }
        tls_->set_verify_callback(ssl::host_name_verification(url_.endpoint.host));
      } else {
        plain_.emplace(ioc_);
      }
      tcp::resolver resolver(ioc_);
      beast::error_code resolve_ec;
      auto endpoints =
          resolver.resolve(url_.endpoint.host, std::to_string(url_.endpoint.port), resolve_ec);
      if (resolve_ec) return resolve_ec;
      tcp().expires_after(options_.timeout);
      tcp().async_connect(endpoints, [&](beast::error_code ec, const tcp::endpoint&) {
        if (ec) {
          result = ec;
          return;
        }
        if (!tls_) {
          Send(request, result);
          return;
        }
        tcp().expires_after(options_.timeout);
        tls_->async_handshake(ssl::stream_base::client, [&](beast::error_code handshake_ec) {
          if (handshake_ec) {
            result = handshake_ec;
            return;
          }
          Send(request, result);
        });
      });
    } else {
      Send(request, result);
    }
    ioc_.run();
    return result;
  }

  HttpUrl url_;
  HttpClientOptions options_;
  net::io_context ioc_;
  std::optional<ssl::context> tls_context_;  // https:// only
  std::optional<beast::tcp_stream> plain_;   // at most one of plain_ and tls_ is set
  std::optional<TlsStream> tls_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> response_;
};

namespace {
HttpUrl ParseOrThrow(std::string_view server_url) {
  auto url = ParseHttpUrl(server_url);
  if (!url) throw std::invalid_argument(url.error());
  return url.value();
}
}  // namespace

HttpClient::HttpClient(std::string_view server_url, HttpClientOptions options)
    : impl_(std::make_unique<Impl>(ParseOrThrow(server_url), std::move(options))) {}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::Get(std::string_view target) {
  return impl_->Request("GET", target, "", "", {});
}

HttpResponse HttpClient::Post(std::string_view target, std::string body,
                              std::string_view content_type) {
  return impl_->Request("POST", target, std::move(body), content_type, {});
}

HttpResponse HttpClient::Request(std::string_view method, std::string_view target, std::string body,
                                 std::string_view content_type, const HttpHeaders& headers) {
  return impl_->Request(method, target, std::move(body), content_type, headers);
}

}  // namespace lossguard::client
