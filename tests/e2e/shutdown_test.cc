// SIGTERM: requests in progress finish and are durable; idle connections do not delay the exit;
// the database is closed cleanly.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace shutdown_test {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

TEST(Shutdown, SigtermFinishesTheRequestInProgressThenExitsCleanly) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(ServerProcess::Options{.db = dir.File("db")});
  auto url = client::ParseHttpUrl(server->url()).value();

  // An idle keep-alive connection must not hold the shutdown up.
  client::HttpClient idle(server->url());
  ASSERT_EQ(idle.Get("/healthz").status, 200u);

  // A large batch (~6 MB, 40,000 records) written on a raw socket, so that we know it has been
  // sent before the signal goes out; the server is still parsing and storing it when SIGTERM
  // arrives (50 ms later; storing it takes about 0.4 s, several seconds under the sanitizers).
  constexpr int kRecords = 40'000;
  http::request<http::string_body> request{http::verb::post, "/api/v1/steps", 11};
  request.set(http::field::host, "localhost");
  request.set(http::field::content_type, "application/x-ndjson");
  request.body() = NdjsonSteps("inflight", 0, kRecords);
  request.prepare_payload();
  boost::asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({boost::asio::ip::make_address(url.endpoint.host), url.endpoint.port});
  http::write(socket, request);

  auto started = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);

  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  boost::system::error_code ec;
  http::read(socket, buffer, parser, ec);
  ASSERT_FALSE(ec) << "the request in progress must get its response: " << ec.message();
  EXPECT_EQ(parser.get().result_int(), 200u) << parser.get().body();
  EXPECT_FALSE(parser.get().keep_alive())
      << "a server that is stopping closes the connection after the response";

  const auto answered = std::chrono::steady_clock::now();
  ASSERT_LT(answered - started, std::chrono::seconds(7))
      << "the batch must be stored well within the 10 s grace period for this test to tell";
  int code = server->Stop(0, std::chrono::seconds(15));  // signal 0: just wait for the exit
  EXPECT_EQ(code, 0) << server->StderrText();
  EXPECT_LT(std::chrono::steady_clock::now() - answered, std::chrono::seconds(3))
      << "the idle connection must not keep the server alive for the shutdown grace period";
  std::string log = server->StderrText();
  EXPECT_NE(log.find("closing the database"), std::string::npos) << log;
  server.reset();

  auto wal = dir.File("db-wal");
  EXPECT_TRUE(!std::filesystem::exists(wal) || std::filesystem::file_size(wal) == 0)
      << "a clean close checkpoints the WAL into the database";

  ServerProcess restarted({.db = dir.File("db")});
  client::HttpClient client(restarted.url());
  auto run = nlohmann::json::parse(client.Get("/api/v1/runs/inflight").body);
  EXPECT_EQ(run["run"]["records"], kRecords);
}

TEST(Shutdown, SigintAlsoStopsGracefully) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  client::HttpClient client(server.url());
  ASSERT_EQ(client.Post("/api/v1/steps", NdjsonSteps("int", 0, 10), "application/x-ndjson").status,
            200u);
  EXPECT_EQ(server.Stop(SIGINT, std::chrono::seconds(15)), 0);
}

}  // namespace shutdown_test
}  // namespace lossguard::testing
