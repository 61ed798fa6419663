#pragma once
// What the end-to-end tests of the server's robustness share: a raw connection for bytes an HTTP
// client would never send, a minimal record's text, and a run's stored record count.

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>

#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"

namespace lossguard::testing {

// A raw TCP connection to the server, for what HttpClient would never send.
class RawConnection {
 public:
  explicit RawConnection(const std::string& url) : socket_(ioc_) {
    auto parsed = client::ParseHttpUrl(url);
    socket_.connect({boost::asio::ip::make_address(parsed.value().endpoint.host),
                     parsed.value().endpoint.port});
  }
  void Send(std::string_view bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }
  // Everything the server sends until it closes the connection (or `timeout` passes).
  std::string ReadUntilClosed(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    socket_.non_blocking(true);
    while (std::chrono::steady_clock::now() < deadline) {
      char buffer[4096];
      boost::system::error_code ec;
      std::size_t n = socket_.read_some(boost::asio::buffer(buffer), ec);
      if (ec == boost::asio::error::would_block) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      if (ec) break;
      out.append(buffer, n);
    }
    return out;
  }
  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
};

// A valid record's JSON text with the fewest fields; `extra` is spliced in before the closing
// brace.
inline std::string MinimalRecord(const std::string& run, std::int64_t step,
                                 const std::string& extra = "") {
  return R"({"run":")" + run + R"(","step":)" + std::to_string(step) +
         R"(,"ga_steps":1,"micro_batch_size":8,"loss":1)" + extra + "}";
}

// How many records the server holds for `run` (0 when it does not know the run).
inline std::int64_t StoredRecords(client::HttpClient& client, const std::string& run) {
  auto response = client.Get("/api/v1/runs/" + run);
  if (response.status == 404) return 0;
  return Body(response)["run"]["records"].get<std::int64_t>();
}

}  // namespace lossguard::testing
