#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <variant>
#include <vector>

#include "http/router.h"
#include "http/session_registry.h"

namespace lossguard::http {

struct SessionLimits {
  std::uint64_t body_limit = 64 << 20;
  std::uint64_t header_limit = 16 << 10;     // request line and headers; beyond it 431
  std::chrono::seconds idle_timeout{60};     // keep-alive connection with no request
  std::chrono::seconds request_timeout{60};  // reading one request, writing one response
};

// What every session of a server shares. `write_pool` runs the handlers of requests that write
// (POST, PUT, DELETE), so that a long write never holds an I/O thread: reads and health checks
// stay answered while a large batch is stored. Null: every handler runs on the I/O thread.
struct SessionContext {
  const Router& router;
  SessionRegistry& registry;
  SessionLimits limits;
  boost::asio::thread_pool* write_pool = nullptr;
  // When set, every connection is TLS: the handshake (under request_timeout) comes first.
  boost::asio::ssl::context* tls = nullptr;
};

// One HTTP/1.1 connection, plain or over TLS: reads a request, asks the router, writes the
// response, repeats while keep-alive holds. Requests on a connection are handled one at a time, in
// order, on its strand. Refused before the body is read: a Transfer-Encoding other than chunked
// (501: the body's length would be unknown), a Content-Encoding other than identity (415), more
// than one Host header or none in HTTP/1.1 (400), a folded header line (400), a request line and
// headers over `header_limit` (431). HEAD is answered for every GET route, with the GET response's
// headers and no body.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::ip::tcp::socket socket, const SessionContext& context);
  ~Session();

  void Start();
  // Finish the request in progress, if any, then close. Thread-safe.
  void Shutdown();

 private:
  void DoRead();
  void ReadHeaderBlock();
  void RefuseHeaderTooLarge();
  void OnHeader(boost::beast::error_code ec);
  void OnRead(boost::beast::error_code ec);
  void Handle(std::shared_ptr<RawRequest> request);
  void Respond(const RawRequest& request, Response response);
  // Answers with an error, then drains and closes: the stream cannot be trusted past it.
  void Refuse(bhttp::status status, std::string_view code, std::string message,
              const nlohmann::json& extra = nlohmann::json::object());
  void Write(Response response, bool head = false);
  void OnWrite(boost::beast::error_code ec, bool close);
  void Close();
  void DrainThenClose();
  // The TCP layer under either kind of stream: timeouts, the socket.
  boost::beast::tcp_stream& tcp();

  using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  std::variant<boost::beast::tcp_stream, TlsStream> stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<Response> response_;
  const SessionContext& context_;
  bool handling_ = false;  // a handler is running on the write pool
  bool writing_ = false;
  bool closing_ = false;
  bool drain_before_close_ = false;
  std::vector<char> drain_buffer_;
};

}  // namespace lossguard::http
