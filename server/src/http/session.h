#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "http/router.h"
#include "http/session_registry.h"

namespace lossguard::http {

struct SessionLimits {
  std::uint64_t body_limit = 64 << 20;
  std::chrono::seconds idle_timeout{60};     // keep-alive connection with no request
  std::chrono::seconds request_timeout{60};  // reading one request, writing one response
};

// One HTTP/1.1 connection: reads a request, asks the router, writes the response, repeats while
// keep-alive holds. Requests on a connection are handled one at a time, in order, on its strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::ip::tcp::socket socket, const Router& router, SessionRegistry& registry,
          SessionLimits limits);
  ~Session();

  void Start();
  // Finish the request in progress, if any, then close. Thread-safe.
  void Shutdown();

 private:
  void DoRead();
  void OnRead(boost::beast::error_code ec, std::size_t bytes);
  void Write(Response response);
  void OnWrite(boost::beast::error_code ec, bool close);
  void Close();
  void DrainThenClose();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<Response> response_;
  const Router& router_;
  SessionRegistry& registry_;
  SessionLimits limits_;
  bool writing_ = false;
  bool closing_ = false;
  bool drain_before_close_ = false;
  std::vector<char> drain_buffer_;
};

}  // namespace lossguard::http
