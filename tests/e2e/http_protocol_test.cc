// What HTTP clients must never be able to do to the server, against the real binary over real
// HTTP on loopback: deeply nested JSON, NUL bytes, transfer codings, requests outside HTTP/1.1,
// duplicate Host, HEAD on every GET route.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <sstream>
#include <string>

#include "e2e/e2e_util.h"
#include "e2e/raw_http.h"
#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace http_protocol_test {

using client::HttpClient;
using nlohmann::json;
using ::testing::HasSubstr;
namespace net = boost::asio;

std::string Nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(HttpProtocol, DeeplyNestedJsonIsRefusedAnywhereInTheBody) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  // 60,000 levels in a field value of an NDJSON record.
  std::string deep =
      R"({"run":)" + Nested(60000) + R"(,"step":0,"ga_steps":1,"micro_batch_size":8,"loss":1})";
  auto response = client.Post("/api/v1/steps", MinimalRecord("ok", 0) + "\n" + deep + "\n",
                              "application/x-ndjson");
  ASSERT_EQ(response.status, 400u) << response.body;
  EXPECT_EQ(Body(response)["error"]["record"], 1);
  EXPECT_THAT(Body(response)["error"]["message"].get<std::string>(),
              HasSubstr("line 2: JSON nested deeper than 64 levels"));
  // An unknown field, a bare line, a records element of a JSON body.
  for (const auto& [body, type] : std::vector<std::pair<std::string, std::string>>{
           {MinimalRecord("x", 0, R"(,"extra":)" + Nested(100000)) + "\n", "application/x-ndjson"},
           {Nested(70000) + "\n", "application/x-ndjson"},
           {R"({"records":[)" + MinimalRecord("x", 0) + "," + Nested(80000) + "]}",
            "application/json"}}) {
    auto refused = client.Post("/api/v1/steps", body, type);
    EXPECT_EQ(refused.status, 400u) << refused.body.substr(0, 200);
    EXPECT_THAT(refused.body, HasSubstr("deeper than 64 levels"));
  }
  auto in_batch = client.Post(
      "/api/v1/steps", R"({"records":[)" + MinimalRecord("x", 0) + "," + Nested(80000) + "]}",
      "application/json");
  EXPECT_EQ(Body(in_batch)["error"]["record"], 1) << "the record that holds the nesting is named";
  // Nesting within the limit is data like any other unknown field.
  auto fine =
      client.Post("/api/v1/steps", MinimalRecord("nested-ok", 0, R"(,"extra":)" + Nested(60)),
                  "application/x-ndjson");
  EXPECT_EQ(fine.status, 200u) << fine.body;
  EXPECT_EQ(StoredRecords(client, "ok"), 0) << "a refused batch stores nothing";
  EXPECT_EQ(StoredRecords(client, "x"), 0);
  EXPECT_EQ(client.Get("/healthz").status, 200u);
}

TEST(HttpProtocol, DataAfterANulByteIsRefusedNotDropped) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  std::string ndjson =
      MinimalRecord("nul", 0) + std::string(1, '\0') + MinimalRecord("nul", 1) + "\n";
  auto response = client.Post("/api/v1/steps", ndjson, "application/x-ndjson");
  ASSERT_EQ(response.status, 400u) << response.body;
  EXPECT_THAT(Body(response)["error"]["message"].get<std::string>(),
              HasSubstr("line 1: NUL byte at byte offset"));
  std::string json_body =
      R"({"records":[)" + MinimalRecord("nul", 0) + "]}" + std::string(1, '\0') + "garbage";
  auto refused = client.Post("/api/v1/steps", json_body, "application/json");
  EXPECT_EQ(refused.status, 400u) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("NUL byte at byte offset"));
  EXPECT_EQ(StoredRecords(client, "nul"), 0);
}

TEST(HttpProtocol, UnsupportedTransferCodingIsRefusedAndTheConnectionClosed) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  RawConnection connection(server.url());
  // The body is itself a request: the server must not read it as the next one.
  std::string body = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  connection.Send(
      "POST /api/v1/steps HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
      "Transfer-Encoding: gzip\r\n\r\n" +
      body);
  std::string answer = connection.ReadUntilClosed();
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 501"));
  EXPECT_THAT(answer, HasSubstr("unsupported_transfer_encoding"));
  EXPECT_EQ(answer.find("HTTP/1.1 200"), std::string::npos) << answer;

  RawConnection gzip_body(server.url());
  gzip_body.Send(
      "POST /api/v1/steps HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
      "Content-Encoding: br\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_THAT(gzip_body.ReadUntilClosed(), HasSubstr("HTTP/1.1 415"));

  RawConnection two_hosts(server.url());
  two_hosts.Send("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  std::string hosts_answer = two_hosts.ReadUntilClosed();
  EXPECT_THAT(hosts_answer, HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(hosts_answer, HasSubstr("more than one Host header"));

  // Chunked is the one transfer coding HTTP/1.1 requires, and it works.
  RawConnection chunked(server.url());
  std::string record = MinimalRecord("chunked", 0) + "\n";
  std::ostringstream size;
  size << std::hex << record.size();
  chunked.Send(
      "POST /api/v1/steps HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
      size.str() + "\r\n" + record + "\r\n0\r\n\r\n");
  EXPECT_THAT(chunked.ReadUntilClosed(), HasSubstr("HTTP/1.1 200"));
  HttpClient client(server.url());
  EXPECT_EQ(StoredRecords(client, "chunked"), 1);
}

TEST(HttpProtocol, RequestsOutsideHttp11AreRefusedWithTheRightStatus) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  RawConnection no_host(server.url());
  no_host.Send("GET /healthz HTTP/1.1\r\n\r\n");
  std::string no_host_answer = no_host.ReadUntilClosed();
  EXPECT_THAT(no_host_answer, HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(no_host_answer, HasSubstr("needs a Host header"));
  RawConnection http10(server.url());  // HTTP/1.0 has no Host requirement
  http10.Send("GET /healthz HTTP/1.0\r\n\r\n");
  EXPECT_THAT(http10.ReadUntilClosed(), HasSubstr(" 200 "));

  // A folded header: the body after it is a request of its own, which must not be answered.
  RawConnection folded(server.url());
  folded.Send(
      "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: one\r\n two\r\n\r\n"
      "GET /api/v1/runs HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string folded_answer = folded.ReadUntilClosed();
  EXPECT_THAT(folded_answer, HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(folded_answer, HasSubstr("obs-fold"));
  EXPECT_EQ(folded_answer.find("HTTP/1.1 200"), std::string::npos) << folded_answer;

  // Header blocks too large, sent whole or a field at a time: 431, and the connection closed.
  for (bool in_pieces : {false, true}) {
    RawConnection large(server.url());
    std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    std::string fields;
    for (int i = 0; i < 400; ++i) fields += "X-Field-" + std::to_string(i) + ": " + "v" + "\r\n";
    fields += "X-Big: " + std::string(20'000, 'a') + "\r\n\r\n";
    if (in_pieces) {
      large.Send(head);
      for (std::size_t at = 0; at < fields.size(); at += 1000) {
        boost::system::error_code ec;
        net::write(large.socket(), net::buffer(fields.substr(at, 1000)), ec);
        if (ec) break;  // refused and closed before the end
      }
    } else {
      boost::system::error_code ec;
      net::write(large.socket(), net::buffer(head + fields), ec);
    }
    std::string answer = large.ReadUntilClosed();
    EXPECT_THAT(answer, HasSubstr("HTTP/1.1 431")) << in_pieces;
    EXPECT_THAT(answer, HasSubstr("header_too_large")) << in_pieces;
  }
  // Just under the limit is served.
  RawConnection fits(server.url());
  fits.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " +
            std::string(15'000, 'a') + "\r\n\r\n");
  EXPECT_THAT(fits.ReadUntilClosed(), HasSubstr("HTTP/1.1 200"));
}

TEST(HttpProtocol, HeadAnswersEveryGetRoute) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  HttpClient client(server.url());
  ASSERT_EQ(client.Post("/api/v1/steps", NdjsonSteps("head", 0, 3), "application/x-ndjson").status,
            200u);
  for (std::string target : {"/healthz", "/api/v1/runs", "/api/v1/runs/head/steps"}) {
    std::string get_body = client.Get(target).body;
    RawConnection connection(server.url());
    connection.Send("HEAD " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::string answer = connection.ReadUntilClosed();
    EXPECT_THAT(answer, HasSubstr("HTTP/1.1 200")) << target;
    EXPECT_THAT(answer, HasSubstr("Content-Length: " + std::to_string(get_body.size()))) << target;
    EXPECT_TRUE(answer.ends_with("\r\n\r\n")) << "no body after the headers: " << answer;
  }
  RawConnection post_only(server.url());
  post_only.Send("HEAD /api/v1/steps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(post_only.ReadUntilClosed(), HasSubstr("HTTP/1.1 405"));
  auto allow = client.Request("PUT", "/healthz", "", "");
  EXPECT_THAT(allow.body, HasSubstr("GET, HEAD"));
}
}  // namespace http_protocol_test
}  // namespace lossguard::testing
