#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "http/router.h"
#include "http/session.h"
#include "lossguard/client/url.h"
#include "worker/worker_thread.h"

namespace lossguard::http {

struct HttpServerOptions {
  int threads = 2;        // I/O threads
  int write_threads = 2;  // run the handlers of writing requests (one stores, one parses the next)
  // Connections served at once. Beyond it a new connection gets 503 with Retry-After and is closed;
  // the connections already open keep being served.
  std::size_t max_connections = 4096;
  // 503 answers in flight at once (each holds a descriptor briefly); past it, closed unanswered.
  std::size_t max_refusals_in_flight = 64;
  SessionLimits limits;
  // How long shutdown waits for in-flight requests before it stops the I/O threads regardless.
  std::chrono::seconds shutdown_grace{10};
  // HTTPS: the PEM certificate chain (the server's certificate first) and its private key. Both
  // empty: plain HTTP.
  std::string tls_certificate_file;
  std::string tls_key_file;
};

// The asynchronous Beast server: an acceptor, a session per connection on its own strand, and
// `threads` I/O threads. Out of file descriptors (EMFILE/ENFILE), it stops accepting for a while
// (backing off to a second) and says so in the log at most every 10 s, instead of spinning.
// Graceful shutdown on Shutdown() (the server's main() calls it on SIGINT/SIGTERM, see
// signal_waiter.h): stop accepting, let requests in progress finish, close idle connections,
// return from Run().
class HttpServer {
 public:
  // Throws std::runtime_error naming the file when a TLS certificate or key cannot be loaded (or
  // the key is not the certificate's).
  HttpServer(const Router& router, HttpServerOptions options);
  ~HttpServer();

  // Binds and listens; throws std::runtime_error naming the address and the OS error. Returns the
  // bound endpoint (the actual port when `address.port` is 0).
  boost::asio::ip::tcp::endpoint Listen(const client::HostPort& address);

  // Serves until shutdown; returns once every session has finished or the grace period ran out.
  void Run();

  // Thread-safe; may be called from any thread, any number of times.
  void Shutdown();

 private:
  class Listener;
  void BeginShutdown();

  const Router& router_;
  HttpServerOptions options_;
  boost::asio::io_context ioc_;
  boost::asio::thread_pool write_pool_;
  std::optional<boost::asio::ssl::context> tls_;
  SessionRegistry registry_;
  SessionContext context_;
  std::shared_ptr<Listener> listener_;
  std::mutex shutdown_mutex_;
  bool shutting_down_ = false;  // guarded by shutdown_mutex_
  // Stops the I/O threads when requests are still running a grace period after shutdown began.
  worker::WorkerThread watchdog_;
};

}  // namespace lossguard::http
