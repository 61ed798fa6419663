// The real server binary over real HTTP on loopback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace http_api_test {

using client::HttpClient;
using nlohmann::json;
using ::testing::HasSubstr;

TEST(HttpApi, IngestAndQueryThroughTheRealServer) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  auto health = client.Get("/healthz");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.content_type, "application/json");

  auto ingest = client.Post("/api/v1/steps", NdjsonSteps("e2e", 0, 250), "application/x-ndjson");
  ASSERT_EQ(ingest.status, 200u) << ingest.body;
  EXPECT_EQ(Body(ingest),
            (json{{"accepted", 250},
                  {"duplicates", 0},
                  {"replaced", 0},
                  {"verdicts", {{"e2e", {{"through_step", 249}, {"open", json::array()}}}}}}));
  auto again = client.Post("/api/v1/steps", json{{"records", {RecordJson("e2e", 0, 9.0)}}}.dump(),
                           "application/json");
  EXPECT_EQ(Body(again)["replaced"], 1);

  json run = Body(client.Get("/api/v1/runs/e2e"))["run"];
  EXPECT_EQ(run["records"], 250);
  EXPECT_EQ(run["latest_step"], 249);
  json steps = Body(client.Get("/api/v1/runs/e2e/steps?from=0&to=0"));
  EXPECT_EQ(steps["steps"][0]["loss"], 9.0);
  EXPECT_EQ(client.Get("/api/v1/nothing").status, 404u);
  EXPECT_EQ(client.Request("PUT", "/api/v1/steps", "", "").status, 405u);
}

TEST(HttpApi, ManyRequestsOnOneKeepAliveConnection) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  for (int i = 0; i < 300; ++i) {
    auto response = client.Post("/api/v1/steps", NdjsonSteps("ka", i, 1), "application/x-ndjson");
    ASSERT_EQ(response.status, 200u) << response.body;
  }
  EXPECT_EQ(Body(client.Get("/api/v1/runs/ka"))["run"]["records"], 300);
}

TEST(HttpApi, OversizeBodyIs413AndNothingIsLost) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db"), .extra_args = {"--max-body-mb", "1"}});
  HttpClient client(server.url());
  ASSERT_EQ(client.Post("/api/v1/steps", NdjsonSteps("big", 0, 10), "application/x-ndjson").status,
            200u);
  auto too_big =
      client.Post("/api/v1/steps", NdjsonSteps("big", 10, 20'000), "application/x-ndjson");
  EXPECT_EQ(too_big.status, 413u);
  EXPECT_EQ(Body(too_big)["error"]["code"], "body_too_large");
  EXPECT_THAT(Body(too_big)["error"]["message"].get<std::string>(), HasSubstr("1048576 bytes"));
  HttpClient fresh(server.url());
  EXPECT_EQ(Body(fresh.Get("/api/v1/runs/big"))["run"]["records"], 10);
}

TEST(HttpApi, MalformedHttpGets400AndTheServerKeepsServing) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  auto url = client::ParseHttpUrl(server.url());
  ASSERT_TRUE(url.ok());
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket socket(ioc);
  socket.connect(
      {boost::asio::ip::make_address(url.value().endpoint.host), url.value().endpoint.port});
  boost::asio::write(socket, boost::asio::buffer(std::string("THIS IS NOT HTTP\r\n\r\n")));
  std::string reply;
  boost::system::error_code ec;
  char buffer[1024];
  while (true) {
    std::size_t n = socket.read_some(boost::asio::buffer(buffer), ec);
    reply.append(buffer, n);
    if (ec) break;
  }
  EXPECT_THAT(reply, HasSubstr("400 Bad Request"));
  EXPECT_THAT(reply, HasSubstr("malformed HTTP request"));
  HttpClient client(server.url());
  EXPECT_EQ(client.Get("/healthz").status, 200u);
}

TEST(HttpApi, TokenProtectsWritesButNotReads) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db"), .env = {{"LOSSGUARD_TOKEN", "t0ken"}}});
  HttpClient anonymous(server.url());
  auto denied = anonymous.Post("/api/v1/steps", NdjsonSteps("auth", 0, 1), "application/x-ndjson");
  EXPECT_EQ(denied.status, 401u);
  EXPECT_EQ(Body(denied)["error"]["code"], "unauthorized");
  HttpClient wrong(server.url(), {.token = "nope"});
  EXPECT_EQ(wrong.Post("/api/v1/steps", NdjsonSteps("auth", 0, 1), "application/x-ndjson").status,
            401u);
  HttpClient authorised(server.url(), {.token = "t0ken"});
  EXPECT_EQ(
      authorised.Post("/api/v1/steps", NdjsonSteps("auth", 0, 1), "application/x-ndjson").status,
      200u);
  EXPECT_EQ(anonymous.Get("/api/v1/runs").status, 200u);
  EXPECT_EQ(anonymous.Post("/api/v1/alerts/1/ack", "", "").status, 401u);
}

TEST(HttpApi, ListensOnIpv6Loopback) {
  TempDir dir;
  std::unique_ptr<ServerProcess> server;
  try {
    server = std::make_unique<ServerProcess>(
        ServerProcess::Options{.db = dir.File("db"), .listen = "[::1]:0"});
  } catch (const std::exception& e) {
    GTEST_SKIP() << "no IPv6 loopback on this machine: " << e.what();
  }
  EXPECT_THAT(server->url(), HasSubstr("http://[::1]:"));
  HttpClient client(server->url());
  EXPECT_EQ(client.Post("/api/v1/steps", NdjsonSteps("v6", 0, 3), "application/x-ndjson").status,
            200u);
}

TEST(HttpApi, StartUpErrorsAreClearAndExitNonZero) {
  TempDir dir;
  std::string db = dir.File("db").string();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"--listen", "0.0.0.0:0"},
            "refusing to listen on non-loopback address 0.0.0.0 without a token"},
           {{"--listen", "127.0.0.1"}, "HOST:PORT"},
           {{"--listen", "localhost:0"}, "must be an IP address"},
           {{"--threads", "0"}, "--threads"},
           {{"--sync", "sometimes"}, "--sync"},
           {{"--token-file", dir.File("missing-token").string()}, "missing-token"},
           {{"--db", dir.File("no/such/dir/db").string()}, "cannot open database"},
           {{"--bogus"}, "--bogus"},
       }) {
    std::vector<std::string> argv = {LOSSGUARD_SERVER_BINARY};
    if (c.args[0] != "--db") argv.insert(argv.end(), {"--db", db});
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    CommandResult result = RunCommand(argv, std::chrono::seconds(10));
    EXPECT_NE(result.exit_code, 0) << c.args[0];
    EXPECT_THAT(result.err + result.out, HasSubstr(c.message)) << c.args[0];
  }
  CommandResult help = RunCommand({LOSSGUARD_SERVER_BINARY, "--help"}, std::chrono::seconds(10));
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--listen"));
}

TEST(HttpApi, ConcurrentClientsAllGetTheirRecordsStored) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db"), .extra_args = {"--sync", "normal"}});
  constexpr int kClients = 4, kBatches = 40, kBatchSize = 100;
  std::atomic<int> failures = 0;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      HttpClient client(server.url());
      for (int b = 0; b < kBatches; ++b) {
        auto response = client.Post(
            "/api/v1/steps", NdjsonSteps("c" + std::to_string(c), b * kBatchSize, kBatchSize),
            "application/x-ndjson");
        if (response.status != 200) ++failures;
      }
    });
  }
  for (auto& thread : clients) thread.join();
  EXPECT_EQ(failures, 0);
  HttpClient client(server.url());
  json runs = Body(client.Get("/api/v1/runs"))["runs"];
  ASSERT_EQ(runs.size(), static_cast<std::size_t>(kClients));
  for (const json& run : runs) EXPECT_EQ(run["records"], kBatches * kBatchSize) << run["run"];
}

TEST(HttpApi, ServesTheDashboardFilesAndNothingOutsideThem) {
  TempDir dir;
  std::filesystem::create_directories(dir.File("web"));
  std::ofstream(dir.File("web/index.html")) << "<!doctype html><title>x</title>";
  std::ofstream(dir.File("web/app.js")) << "console.log(1);";
  std::ofstream(dir.File("web/.secret")) << "TOP-SECRET";
  std::ofstream(dir.File("outside.txt")) << "TOP-SECRET";
  std::filesystem::create_directories(dir.File("web/fonts"));
  std::filesystem::create_symlink(dir.File("outside.txt"), dir.File("web/leak.js"));
  std::filesystem::create_symlink(dir.File("web/app.js"), dir.File("web/alias.js"));
  ServerProcess server({.db = dir.File("db"), .extra_args = {"--web-root", dir.File("web")}});
  HttpClient client(server.url());
  auto index = client.Get("/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(index.body, "<!doctype html><title>x</title>");
  auto js = client.Get("/assets/app.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  for (const char* target : {"/assets/.secret", "/assets/..%2Foutside.txt",
                             "/assets/../outside.txt", "/assets/missing.js", "/assets/%2E%2E"}) {
    auto response = client.Get(target);
    EXPECT_EQ(response.status, 404) << target;
    EXPECT_THAT(response.body, ::testing::Not(HasSubstr("TOP-SECRET"))) << target;
  }
  // A link leading out of the web root is not followed; a directory has nothing to serve.
  for (const char* target : {"/assets/leak.js", "/assets/fonts"}) {
    auto response = client.Get(target);
    EXPECT_EQ(response.status, 404) << target;
    EXPECT_THAT(response.body, ::testing::Not(HasSubstr("TOP-SECRET"))) << target;
    EXPECT_THAT(response.body, HasSubstr("no such file")) << target;
  }
  auto alias = client.Get("/assets/alias.js");  // a link that stays inside is an ordinary file
  EXPECT_EQ(alias.status, 200);
  EXPECT_EQ(alias.body, "console.log(1);");
  // A NUL would cut the name the file system sees while the type came from all of it.
  auto nul = client.Get("/assets/app.js%00.html");
  EXPECT_EQ(nul.status, 400);
  EXPECT_THAT(nul.body, HasSubstr("NUL"));
  EXPECT_EQ(nul.body.find("console.log"), std::string::npos);

  ServerProcess bare({.db = dir.File("db2"), .extra_args = {"--web-root", dir.File("none")}});
  HttpClient bare_client(bare.url());
  auto missing = bare_client.Get("/");
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(missing.body, HasSubstr("the web dashboard is not in"));
}

}  // namespace http_api_test
}  // namespace lossguard::testing
