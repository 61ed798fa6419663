#include "lossguard/client/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "lossguard/client/url.h"

namespace lossguard::client {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

class HttpClient::Impl {
 public:
  Impl(HttpUrl url, HttpClientOptions options)
      : url_(std::move(url)), options_(std::move(options)) {}

  HttpResponse Request(std::string_view method, std::string_view target, std::string body,
                       std::string_view content_type) {
    http::verb verb = http::string_to_verb(beast::string_view(method.data(), method.size()));
    if (verb == http::verb::unknown)
      throw std::invalid_argument("unknown HTTP method " + std::string(method));
    http::request<http::string_body> request{verb, url_.base_path + std::string(target), 11};
    request.set(http::field::host, url_.endpoint.host + ":" + std::to_string(url_.endpoint.port));
    request.set(http::field::user_agent, "lossguard/0.1");
    if (!options_.token.empty()) {
      request.set(http::field::authorization, "Bearer " + options_.token);
    }
    if (!content_type.empty())
      request.set(http::field::content_type,
                  beast::string_view(content_type.data(), content_type.size()));
    request.body() = std::move(body);
    request.prepare_payload();
    request.keep_alive(true);

    bool reused = stream_.has_value();
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
    if (!response.keep_alive()) Close();
    return out;
  }

 private:
  std::string Describe() const {
    return url_.endpoint.host + ":" + std::to_string(url_.endpoint.port);
  }

  void Close() {
    if (stream_) {
      beast::error_code
          ignored;  // closing a socket the peer already closed is not an error to report
      stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream_->socket().close(ignored);
    }
    stream_.reset();
  }

  // Runs connect (if needed), write and read as async operations under one deadline, so that a
  // blocking call still has a timeout.
  beast::error_code RoundTrip(http::request<http::string_body>& request) {
    beast::error_code result;
    ioc_.restart();
    response_.emplace();
    response_->body_limit(boost::none);  // large step queries are legitimate; the caller chose them
    buffer_.clear();
    auto deadline = options_.timeout;
    auto send = [&] {
      stream_->expires_after(deadline);
      http::async_write(*stream_, request, [&](beast::error_code ec, std::size_t) {
        if (ec) {
          result = ec;
          return;
        }
        stream_->expires_after(deadline);
        http::async_read(*stream_, buffer_, *response_,
                         [&](beast::error_code read_ec, std::size_t) { result = read_ec; });
      });
    };
    if (!stream_) {
      stream_.emplace(ioc_);
      tcp::resolver resolver(ioc_);
      beast::error_code resolve_ec;
      auto endpoints =
          resolver.resolve(url_.endpoint.host, std::to_string(url_.endpoint.port), resolve_ec);
      if (resolve_ec) return resolve_ec;
      stream_->expires_after(deadline);
      stream_->async_connect(endpoints, [&](beast::error_code ec, const tcp::endpoint&) {
        if (ec) {
          result = ec;
          return;
        }
        send();
      });
    } else {
      send();
    }
    ioc_.run();
    return result;
  }

  HttpUrl url_;
  HttpClientOptions options_;
  net::io_context ioc_;
  std::optional<beast::tcp_stream> stream_;
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
  return impl_->Request("GET", target, "", "");
}

HttpResponse HttpClient::Post(std::string_view target, std::string body,
                              std::string_view content_type) {
  return impl_->Request("POST", target, std::move(body), content_type);
}

HttpResponse HttpClient::Request(std::string_view method, std::string_view target, std::string body,
                                 std::string_view content_type) {
  return impl_->Request(method, target, std::move(body), content_type);
}

}  // namespace lossguard::client
