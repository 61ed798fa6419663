// The HTTP client against responses cut into two TCP segments at every byte position: header
// block, body, chunk sizes, and a body that ends with the connection. Proxies and small servers
// (Python's http.server among them) send the header block and the body in separate writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "lossguard/client/http_client.h"

namespace lossguard::testing {
namespace split_response_test {

namespace net = boost::asio;
using net::ip::tcp;

// A loopback server that answers each of `cuts` connections once with `response`, sent as two
// writes split at the connection's cut, a pause between them so that they leave as two segments.
class SplittingServer {
 public:
  SplittingServer(std::string response, std::vector<std::size_t> cuts)
      : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)),
        response_(std::move(response)),
        cuts_(std::move(cuts)),
        thread_([this] { Serve(); }) {}
  ~SplittingServer() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

 private:
  void Serve() {
    for (std::size_t cut : cuts_) {
      boost::system::error_code ec;
      tcp::socket socket(ioc_);
      acceptor_.accept(socket, ec);
      if (ec) return;
      socket.set_option(tcp::no_delay(true), ec);
      std::string request;
      net::read_until(socket, net::dynamic_buffer(request), "\r\n\r\n", ec);
      if (ec) continue;
      net::write(socket, net::buffer(response_.data(), cut), ec);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      net::write(socket, net::buffer(response_.data() + cut, response_.size() - cut), ec);
      socket.shutdown(tcp::socket::shutdown_send, ec);
      char drain[256];
      while (!ec) socket.read_some(net::buffer(drain), ec);  // until the client closes
    }
  }

  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::string response_;
  std::vector<std::size_t> cuts_;
  std::thread thread_;
};

void ExpectEveryCutReadsWhole(const std::string& response, const std::string& body) {
  std::vector<std::size_t> cuts;
  for (std::size_t cut = 1; cut < response.size(); ++cut) cuts.push_back(cut);
  SplittingServer server(response, cuts);
  for (std::size_t cut : cuts) {
    client::HttpClient client(server.url(), {.timeout = std::chrono::seconds(5)});
    try {
      client::HttpResponse answer = client.Get("/api/v1/alerts");
      EXPECT_EQ(answer.status, 200u) << "cut at byte " << cut;
      EXPECT_EQ(answer.body, body) << "cut at byte " << cut;
      EXPECT_EQ(answer.content_type, "application/json") << "cut at byte " << cut;
    } catch (const client::HttpError& error) {
      ADD_FAILURE() << "cut at byte " << cut << ": " << error.what();
    }
  }
}

TEST(SplitResponse, ContentLengthAtEveryBytePosition) {
  const std::string body = R"({"alerts":[]})";
  ExpectEveryCutReadsWhole(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n" + body,
      body);
}

TEST(SplitResponse, ChunkedAtEveryBytePosition) {
  ExpectEveryCutReadsWhole(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6\r\n{\"aler\r\n7\r\nts\":[]}\r\n0\r\n\r\n",
      R"({"alerts":[]})");
}

TEST(SplitResponse, BodyEndedByTheConnectionAtEveryBytePosition) {
  ExpectEveryCutReadsWhole(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
      R"({"alerts":[]})",
      R"({"alerts":[]})");
}

}  // namespace split_response_test
}  // namespace lossguard::testing
