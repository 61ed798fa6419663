// The read token against the real server: with --read-token-file every read endpoint and /metrics
// need it (or the write token), /healthz and the dashboard's page stay open, writes still need the
// write token, and the CLI sends the token it is given.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "e2e/corpus.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace read_access_test {

using ::testing::HasSubstr;
constexpr const char* kWriteToken = "write-token-abcdefghijklmnop";
constexpr const char* kReadToken = "read-token-qrstuvwxyz0123456";

std::filesystem::path SecretFile(const TempDir& dir, const std::string& name,
                                 const std::string& text) {
  const auto path = dir.File(name);
  std::ofstream(path) << text << "\n";
  ::chmod(path.c_str(), 0600);
  return path;
}

client::HttpClient As(const ServerProcess& server, const std::string& token) {
  client::HttpClientOptions options;
  options.token = token;
  return client::HttpClient(server.url(), options);
}

TEST(ReadAccess, EveryReadNeedsTheReadOrWriteTokenAndProbesStayOpen) {
  TempDir dir;
  ServerProcess server(
      {.db = dir.File("db"),
       .extra_args = {"--read-token-file", SecretFile(dir, "read", kReadToken).string()},
       .env = {{"LOSSGUARD_TOKEN", kWriteToken}}});
  client::HttpClient writer = As(server, kWriteToken);
  client::HttpClient reader = As(server, kReadToken);
  client::HttpClient anonymous(server.url());
  auto lines = Lines("bug-sum-no-ga-div");
  Send(writer, lines, 0, lines.size());

  for (const char* path :
       {"/api/v1/runs", "/api/v1/runs/bug-sum-no-ga-div",
        "/api/v1/runs/bug-sum-no-ga-div/steps?max_points=100", "/api/v1/alerts", "/metrics"}) {
    auto denied = anonymous.Get(path);
    EXPECT_EQ(denied.status, 401u) << path;
    EXPECT_THAT(denied.body, HasSubstr("read token")) << path;
    EXPECT_EQ(As(server, "a-wrong-token-of-some-length").Get(path).status, 401u) << path;
    EXPECT_EQ(reader.Get(path).status, 200u) << path;
    EXPECT_EQ(writer.Get(path).status, 200u) << path << ": the write token reads too";
  }
  EXPECT_EQ(anonymous.Get("/healthz").status, 200u) << "load balancers probe without a token";
  EXPECT_NE(anonymous.Get("/").status, 401u) << "the dashboard's page asks for the token itself";
  EXPECT_EQ(reader.Post("/api/v1/steps", lines[0] + "\n", "application/x-ndjson").status, 401u)
      << "the read token does not write";
  EXPECT_EQ(reader.Request("DELETE", "/api/v1/runs/bug-sum-no-ga-div", "", "").status, 401u);

  const std::vector<std::string> alerts = {LOSSGUARD_CLI_BINARY, "alerts", "--server",
                                           server.url()};
  CommandResult without = RunCommand(alerts, std::chrono::seconds(30));
  EXPECT_EQ(without.exit_code, 1);
  EXPECT_THAT(without.err, HasSubstr("401"));
  CommandResult with =
      RunCommand(alerts, std::chrono::seconds(30), {{"LOSSGUARD_TOKEN", kReadToken}});
  EXPECT_EQ(with.exit_code, 0) << with.err;
  EXPECT_THAT(with.out, HasSubstr("loss_scale_mismatch"));
  CommandResult exported =
      RunCommand({LOSSGUARD_CLI_BINARY, "export", "bug-sum-no-ga-div", "--server", server.url(),
                  "--token-file", SecretFile(dir, "cli-read", kReadToken).string()},
                 std::chrono::seconds(30));
  EXPECT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(std::count(exported.out.begin(), exported.out.end(), '\n'),
            static_cast<long>(lines.size()));
  EXPECT_THAT(server.StderrText(), HasSubstr("auth on for writes and reads"));
}

TEST(ReadAccess, BadReadTokensAreRefusedAtStart) {
  TempDir dir;
  auto same = RunCommand({LOSSGUARD_SERVER_BINARY, "--db", dir.File("db").string(),
                          "--read-token-file", SecretFile(dir, "same", kWriteToken).string()},
                         std::chrono::seconds(30), {{"LOSSGUARD_TOKEN", kWriteToken}});
  EXPECT_EQ(same.exit_code, 2);
  EXPECT_THAT(same.err, HasSubstr("the read token is the write token"));
  auto missing = RunCommand({LOSSGUARD_SERVER_BINARY, "--db", dir.File("db").string(),
                             "--read-token-file", dir.File("nope").string()},
                            std::chrono::seconds(30));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("nope"));
  auto empty = RunCommand({LOSSGUARD_SERVER_BINARY, "--db", dir.File("db").string(),
                           "--read-token-file", SecretFile(dir, "empty", "  ").string()},
                          std::chrono::seconds(30));
  EXPECT_EQ(empty.exit_code, 2);
}

}  // namespace read_access_test
}  // namespace lossguard::testing
