#include "http/http_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lossguard::http {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

// Accepts connections. Beyond max_connections it answers 503 itself (a few bytes, then a bounded
// half-close) instead of starting a session; out of file descriptors it backs off.
class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, const SessionContext& context, std::size_t max_connections,
           std::size_t max_refusals_in_flight)
      : ioc_(ioc),
        acceptor_(net::make_strand(ioc)),
        retry_timer_(acceptor_.get_executor()),
        context_(context),
        max_connections_(max_connections),
        max_refusals_in_flight_(max_refusals_in_flight) {}

  tcp::endpoint Open(const client::HostPort& address) {
    boost::system::error_code ec;
    auto ip = net::ip::make_address(address.host, ec);
    if (ec)
      throw std::runtime_error("--listen: \"" + address.host +
                               "\" is not an IP address: " + ec.message());
    tcp::endpoint endpoint(ip, address.port);
    auto fail = [&](const char* what) {
      throw std::runtime_error(std::string("cannot ") + what + " " + address.host + ":" +
                               std::to_string(address.port) + ": " + ec.message());
    };
    if (acceptor_.open(endpoint.protocol(), ec)) fail("open a socket for");
    if (acceptor_.set_option(net::socket_base::reuse_address(true), ec))
      fail("set SO_REUSEADDR on");
    if (acceptor_.bind(endpoint, ec)) fail("bind");
    if (acceptor_.listen(net::socket_base::max_listen_connections, ec)) fail("listen on");
    return acceptor_.local_endpoint();
  }

  void Start() { Accept(); }

  void Stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ignored;  // closing an acceptor only fails if it is already closed
      self->acceptor_.close(ignored);
      self->retry_timer_.cancel();
    });
  }

 private:
  static constexpr auto kFirstBackoff = std::chrono::milliseconds(10);
  static constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);
  static constexpr auto kWarnEvery = std::chrono::seconds(10);

  void Accept() {
    acceptor_.async_accept(
        net::make_strand(ioc_),
        [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
          if (ec == net::error::operation_aborted || !self->acceptor_.is_open()) return;
          if (ec) return self->BackOff(ec);
          self->backoff_ = kFirstBackoff;
          if (self->context_.registry.Size() >= self->max_connections_) {
            self->RefuseConnection(std::move(socket));
          } else {
            std::make_shared<Session>(std::move(socket), self->context_)->Start();
          }
          self->Accept();
        });
  }

  // EMFILE/ENFILE (or any other accept failure) would fail again at once: wait, doubling up to a
  // second, while the sessions already open go on being served and free descriptors as they end.
  void BackOff(const boost::system::error_code& ec) {
    ++failures_since_warning_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_warning_ >= kWarnEvery) {
      spdlog::warn(
          "accept: {} ({} failures since the last warning; {} connections open); pausing accepts "
          "for up to {} ms at a time",
          ec.message(), failures_since_warning_, context_.registry.Size(), kMaxBackoff.count());
      last_warning_ = now;
      failures_since_warning_ = 0;
    }
    retry_timer_.expires_after(backoff_);
    backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, kMaxBackoff);
    retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
      if (wait_ec || !self->acceptor_.is_open()) return;
      self->Accept();
    });
  }

  void RefuseConnection(tcp::socket socket) {
    ++refused_since_warning_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_warning_ >= kWarnEvery) {
      spdlog::warn("{} connections open (--max-connections); refused {} new ones with 503",
                   max_connections_, refused_since_warning_);
      last_refusal_warning_ = now;
      refused_since_warning_ = 0;
    }
    if (static_cast<std::size_t>(refusals_in_flight_->load()) >= max_refusals_in_flight_ ||
        context_.tls != nullptr) {
      // A flood of connections: no courtesy for each of them. Under TLS the 503 would need a
      // handshake first, which is what a server at its limit should not spend: just close.
      boost::system::error_code ignored;
      socket.close(ignored);
      return;
    }
    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
    auto counter = refusals_in_flight_;
    ++*counter;
    static const std::string kBody =
        R"({"error":{"status":503,"code":"too_many_connections","message":"the server is at )"
        R"(its connection limit (--max-connections); retry shortly"}})";
    static const std::string kResponse =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: "
        "1\r\nConnection: close\r\nContent-Length: " +
        std::to_string(kBody.size()) + "\r\n\r\n" + kBody;
    stream->expires_after(std::chrono::seconds(1));
    net::async_write(*stream, net::buffer(kResponse),
                     [stream, counter](boost::system::error_code ec, std::size_t) {
                       boost::system::error_code ignored;
                       if (!ec) stream->socket().shutdown(tcp::socket::shutdown_send, ignored);
                       // Read what the client sent until it closes (or a second passes), so that
                       // closing does not reset the connection before the 503 is read.
                       auto sink = std::make_shared<std::array<char, 4096>>();
                       DrainRefused(stream, sink, counter);
                     });
  }

  static void DrainRefused(std::shared_ptr<beast::tcp_stream> stream,
                           std::shared_ptr<std::array<char, 4096>> sink,
                           std::shared_ptr<std::atomic<int>> counter) {
    stream->async_read_some(net::buffer(*sink),
                            [stream, sink, counter](boost::system::error_code ec, std::size_t) {
                              if (!ec) return DrainRefused(stream, sink, counter);
                              boost::system::error_code ignored;
                              stream->socket().close(ignored);
                              --*counter;
                            });
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_timer_;
  const SessionContext& context_;
  std::size_t max_connections_;
  std::size_t max_refusals_in_flight_;
  std::chrono::milliseconds backoff_ = kFirstBackoff;
  std::chrono::steady_clock::time_point last_warning_{};
  std::int64_t failures_since_warning_ = 0;
  std::chrono::steady_clock::time_point last_refusal_warning_{};
  std::int64_t refused_since_warning_ = 0;
  std::shared_ptr<std::atomic<int>> refusals_in_flight_ = std::make_shared<std::atomic<int>>(0);
};

namespace {
// A TLS 1.2+ server context with the certificate chain and key; errors name the file.
net::ssl::context LoadTlsContext(const HttpServerOptions& options) {
  net::ssl::context context(net::ssl::context::tls_server);
  context.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                      net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                      net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
  boost::system::error_code ec;
  context.use_certificate_chain_file(options.tls_certificate_file, ec);
  if (ec) {
    throw std::runtime_error("--tls-cert-file " + options.tls_certificate_file +
                             ": cannot load the certificate chain: " + ec.message());
  }
  context.use_private_key_file(options.tls_key_file, net::ssl::context::pem, ec);
  if (ec && ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
    throw std::runtime_error("--tls-key-file " + options.tls_key_file +
                             " is not the key of the certificate in " +
                             options.tls_certificate_file);
  }
  if (ec) {
    throw std::runtime_error("--tls-key-file " + options.tls_key_file +
                             ": cannot load the private key (PEM, unencrypted): " + ec.message());
  }
  if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
    throw std::runtime_error("--tls-key-file " + options.tls_key_file +
                             " is not the key of the certificate in " +
                             options.tls_certificate_file);
  }
  return context;
}
}  // namespace

HttpServer::HttpServer(const Router& router, HttpServerOptions options)
    : router_(router),
      options_(options),
      ioc_(options.threads),
      write_pool_(static_cast<std::size_t>(std::max(1, options.write_threads))),
      context_{router_, registry_, options_.limits, &write_pool_} {
  if (!options_.tls_certificate_file.empty() || !options_.tls_key_file.empty()) {
    tls_.emplace(LoadTlsContext(options_));
    context_.tls = &*tls_;
  }
}

HttpServer::~HttpServer() = default;

tcp::endpoint HttpServer::Listen(const client::HostPort& address) {
  listener_ = std::make_shared<Listener>(ioc_, context_, options_.max_connections,
                                         options_.max_refusals_in_flight);
  return listener_->Open(address);
}

void HttpServer::Shutdown() {
  net::post(ioc_, [this] { BeginShutdown(); });
}

// Runs on an I/O thread. Stops accepting, asks every session to finish, and arms a hard deadline on
// its own thread: a timer inside ioc_ would itself keep Run() alive for the whole grace period.
void HttpServer::BeginShutdown() {
  std::lock_guard lock(shutdown_mutex_);
  if (shutting_down_) return;
  shutting_down_ = true;
  if (listener_) listener_->Stop();
  registry_.ForEach([](const std::shared_ptr<Session>& session) { session->Shutdown(); });
  watchdog_.Start([this] {
    // Run() stops the watchdog once every request has finished: Wait() then returns false.
    if (watchdog_.Wait(options_.shutdown_grace)) {
      spdlog::warn("requests still running after {}s; stopping anyway",
                   options_.shutdown_grace.count());
      ioc_.stop();
    }
  });
}

void HttpServer::Run() {
  if (!listener_) throw std::logic_error("HttpServer::Run before Listen");
  listener_->Start();

  std::vector<std::thread> threads;
  for (int i = 1; i < options_.threads; ++i) threads.emplace_back([this] { ioc_.run(); });
  ioc_.run();  // returns once the acceptor and every session are gone
  for (std::thread& thread : threads) thread.join();
  write_pool_.join();  // idle by now: every session, and so every handler, has finished
  watchdog_.Stop();
}

}  // namespace lossguard::http
