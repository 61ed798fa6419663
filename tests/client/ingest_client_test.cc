// IngestClient against the real lossguard-server over loopback: what the server stored, which
// record it refused, and what a failure says about retrying.
#include "lossguard/client/ingest_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <fstream>
#include <thread>

#include "lossguard/wire/record_codec.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::client {
namespace ingest_client_test {

using lossguard::testing::MakeRecord;
using lossguard::testing::ServerProcess;
using lossguard::testing::TempDir;
using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& run, int first, int count, double loss = 2.0) {
  std::vector<std::string> lines;
  for (int step = first; step < first + count; ++step)
    lines.push_back(wire::CanonicalJson(MakeRecord(run, step, loss)));
  return lines;
}

TEST(IngestClient, SaysWhatTheServerStored) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  IngestClient client(server.url());
  auto first = client.Post(Lines("r", 0, 5));
  ASSERT_TRUE(first.ok()) << first.error().Describe();
  EXPECT_EQ(first.value().accepted, 5);
  std::vector<std::string> again = Lines("r", 3, 4);        // steps 3, 4 again; 5, 6 new
  again[1] = wire::CanonicalJson(MakeRecord("r", 4, 9.0));  // step 4 with another loss
  auto second = client.Post(again);
  ASSERT_TRUE(second.ok()) << second.error().Describe();
  EXPECT_EQ(second.value().accepted, 4) << "every record of the batch";
  EXPECT_EQ(second.value().duplicates, 1);
  EXPECT_EQ(second.value().replaced, 1);
}

TEST(IngestClient, ReadsTheRunsOpenEpisodesFromTheAcknowledgement) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  IngestClient client(server.url());
  auto healthy = client.Post(Lines("v", 0, 3));
  ASSERT_TRUE(healthy.ok()) << healthy.error().Describe();
  ASSERT_TRUE(healthy.value().verdicts) << "this server reports verdicts";
  EXPECT_EQ(healthy.value().verdicts->at("v").through_step, 2);
  EXPECT_TRUE(healthy.value().verdicts->at("v").open.empty());
  auto nan = client.Post(Lines("v", 3, 2, std::nan("")));
  ASSERT_TRUE(nan.ok()) << nan.error().Describe();
  const RunVerdicts& verdicts = nan.value().verdicts->at("v");
  EXPECT_EQ(verdicts.through_step, 4);
  ASSERT_EQ(verdicts.open.size(), 1u);
  EXPECT_EQ(verdicts.open[0].kind, "nonfinite");
  EXPECT_EQ(verdicts.open[0].severity, "critical");
  EXPECT_EQ(verdicts.open[0].first_step, 3);
  EXPECT_GE(verdicts.open[0].id, 1);
  EXPECT_FALSE(verdicts.open[0].acked);
  EXPECT_THAT(verdicts.open[0].message, HasSubstr("NaN"));
}

// A server from before verdicts answered with the counts only: the batch is stored all the same,
// and the collector knows there are no verdicts to wait for. (The stand-in answers as it did, its
// header block and body in separate segments, as proxies and Python's http.server send them.)
TEST(IngestClient, AnAcknowledgementWithoutVerdictsIsAnOlderServersAndCounts) {
  TempDir dir;
  const std::string port_file = dir.File("port").string();
  lossguard::testing::BackgroundProcess old_server(
      {"/usr/bin/python3", "-c",
       "import http.server, json, sys, time\n"
       "class H(http.server.BaseHTTPRequestHandler):\n"
       "    def do_POST(self):\n"
       "        body = self.rfile.read(int(self.headers['Content-Length']))\n"
       "        n = sum(1 for line in body.splitlines() if line.strip())\n"
       "        out = json.dumps({'accepted': n, 'duplicates': 0, 'replaced': 0}).encode()\n"
       "        self.send_response(200)\n"
       "        self.send_header('Content-Type', 'application/json')\n"
       "        self.send_header('Content-Length', str(len(out)))\n"
       "        self.end_headers()\n"
       "        time.sleep(0.05)\n"
       "        self.wfile.write(out)\n"
       "    def log_message(self, *args):\n"
       "        pass\n"
       "s = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
       "open(sys.argv[1] + '.tmp', 'w').write(str(s.server_address[1]))\n"
       "import os; os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
       "s.serve_forever()\n",
       port_file});
  std::string port;
  for (int tries = 0; tries < 500 && port.empty(); ++tries) {
    std::ifstream(port_file) >> port;
    if (port.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(port.empty()) << old_server.LogText();
  IngestClient client("http://127.0.0.1:" + port);
  auto sent = client.Post(Lines("old", 0, 3));
  ASSERT_TRUE(sent.ok()) << sent.error().Describe();
  EXPECT_EQ(sent.value().accepted, 3);
  EXPECT_FALSE(sent.value().verdicts);
}

TEST(IngestClient, NamesTheInvalidRecordAndStoresNothingOfItsBatch) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  IngestClient client(server.url());
  std::vector<std::string> lines = Lines("bad", 0, 4);
  lines[2] = R"({"run":"bad","step":2,"ga_steps":0,"micro_batch_size":1,"loss":1})";
  auto refused = client.Post(lines);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().status, 400u);
  EXPECT_EQ(refused.error().record, 2u);
  EXPECT_TRUE(refused.error().invalid_batch());
  EXPECT_FALSE(refused.error().retryable());
  EXPECT_THAT(refused.error().message, HasSubstr("ga_steps must be >= 1"));
  lines.erase(lines.begin() + 2);
  auto rest = client.Post(lines);
  ASSERT_TRUE(rest.ok()) << rest.error().Describe();
  EXPECT_EQ(rest.value().accepted, 3) << "the refused batch stored nothing";
}

TEST(IngestClient, TransportFailuresAndAuthAreRetryableRefusals) {
  TempDir dir;
  std::ofstream(dir.File("token")) << "6f1c0e9a4b7d2e8f5a3c1b0d9e7f6a5b\n";
  ServerProcess server(
      {.db = dir.File("db"), .extra_args = {"--token-file", dir.File("token").string()}});
  IngestClient anonymous(server.url());
  auto unauthorized = anonymous.Post(Lines("auth", 0, 1));
  ASSERT_FALSE(unauthorized.ok());
  EXPECT_EQ(unauthorized.error().status, 401u);
  EXPECT_TRUE(unauthorized.error().retryable());
  EXPECT_THAT(unauthorized.error().Describe(), HasSubstr("HTTP 401: "));
  IngestClient authorized(server.url(), {.token = "6f1c0e9a4b7d2e8f5a3c1b0d9e7f6a5b"});
  EXPECT_TRUE(authorized.Post(Lines("auth", 0, 1)).ok());

  const std::string url = server.url();
  server.Stop(SIGTERM, std::chrono::seconds(10));
  auto down = authorized.Post(Lines("auth", 1, 1));
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().status, 0u);
  EXPECT_TRUE(down.error().retryable());
  EXPECT_THAT(down.error().Describe(), HasSubstr(url.substr(7)));  // names host:port
  EXPECT_THROW(IngestClient("ftp://nowhere"), std::invalid_argument);
}

}  // namespace ingest_client_test
}  // namespace lossguard::client
