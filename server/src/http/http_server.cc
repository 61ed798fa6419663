#include "http/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lossguard::http {

namespace net = boost::asio;
using tcp = net::ip::tcp;

class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, const Router& router, SessionRegistry& registry,
           SessionLimits limits)
      : ioc_(ioc),
        acceptor_(net::make_strand(ioc)),
        router_(router),
        registry_(registry),
        limits_(limits) {}

  tcp::endpoint Open(const wire::HostPort& address) {
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
    });
  }

 private:
  void Accept() {
    acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](
                                                       boost::system::error_code ec,
                                                       tcp::socket socket) {
      if (ec == net::error::operation_aborted || !self->acceptor_.is_open()) return;
      if (ec) {
        spdlog::warn("accept: {}", ec.message());  // e.g. out of file descriptors; keep accepting
      } else {
        std::make_shared<Session>(std::move(socket), self->router_, self->registry_, self->limits_)
            ->Start();
      }
      self->Accept();
    });
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  const Router& router_;
  SessionRegistry& registry_;
  SessionLimits limits_;
};

HttpServer::HttpServer(const Router& router, HttpServerOptions options)
    : router_(router), options_(options), ioc_(options.threads) {}

HttpServer::~HttpServer() = default;

tcp::endpoint HttpServer::Listen(const wire::HostPort& address) {
  listener_ = std::make_shared<Listener>(ioc_, router_, registry_, options_.limits);
  return listener_->Open(address);
}

void HttpServer::Shutdown() {
  net::post(ioc_, [this] { BeginShutdown(); });
}

// Runs on an I/O thread. Stops accepting, drops the signal wait (the only other pending work), asks
// every session to finish, and arms a hard deadline on its own thread: a timer inside ioc_ would
// itself keep Run() alive for the whole grace period.
void HttpServer::BeginShutdown() {
  std::lock_guard lock(shutdown_mutex_);
  if (shutting_down_) return;
  shutting_down_ = true;
  if (listener_) listener_->Stop();
  if (signals_) signals_->cancel();
  registry_.ForEach([](const std::shared_ptr<Session>& session) { session->Shutdown(); });
  watchdog_ = std::thread([this] {
    std::unique_lock wait_lock(shutdown_mutex_);
    if (!stopped_.wait_for(wait_lock, options_.shutdown_grace, [this] { return finished_; })) {
      spdlog::warn("requests still running after {}s; stopping anyway",
                   options_.shutdown_grace.count());
      ioc_.stop();
    }
  });
}

void HttpServer::Run() {
  if (!listener_) throw std::logic_error("HttpServer::Run before Listen");
  signals_.emplace(ioc_, SIGINT, SIGTERM);
  signals_->async_wait([this](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: finishing requests in progress, then stopping", signal);
    BeginShutdown();
  });
  listener_->Start();

  std::vector<std::thread> threads;
  for (int i = 1; i < options_.threads; ++i) threads.emplace_back([this] { ioc_.run(); });
  ioc_.run();  // returns once the acceptor, the signal wait and every session are gone
  for (std::thread& thread : threads) thread.join();
  {
    std::lock_guard lock(shutdown_mutex_);
    finished_ = true;
  }
  stopped_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  signals_.reset();
}

}  // namespace lossguard::http
