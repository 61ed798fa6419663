// The lossguard CLI against the real server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "server/store_fixtures.h"
#include "store/store.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace cli_test {

using ::testing::HasSubstr;
const std::string kSample =
    std::string(LOSSGUARD_SOURCE_DIR) + "/schema/examples/sample-run.ndjson";

TEST(Cli, ReplaysTheSampleRunAndReplayIsIdempotent) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  CommandResult first =
      RunCli({"replay", kSample, "--server", server.url(), "--batch-size", "128"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("600 records in 5 batches (0 duplicates, 0 replaced)"));
  CommandResult second = RunCli({"replay", kSample, "--server", server.url()});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.out, HasSubstr("600 records in 1 batches (600 duplicates, 0 replaced)"));

  client::HttpClient client(server.url());
  auto runs = nlohmann::json::parse(client.Get("/api/v1/runs").body)["runs"];
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0]["run"], "sample-correct");
  EXPECT_EQ(runs[0]["records"], 300);
}

TEST(Cli, ReplayStopsAtTheFirstBadLineAndSaysWhere) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  std::string file = dir.File("bad.ndjson").string();
  {
    std::ofstream out(file);
    out << NdjsonSteps("bad", 0, 2) << "\n"
        << R"({"run":"bad","step":2,"ga_steps":0,"micro_batch_size":1,"loss":1})"
        << "\n"
        << NdjsonSteps("bad", 3, 1);
  }
  CommandResult result = RunCli({"replay", file, "--server", server.url(), "--batch-size", "1"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("bad.ndjson:4: ga_steps: ga_steps must be >= 1, but got 0"));
  EXPECT_THAT(result.err, HasSubstr("2 records before this line were stored"));
}

TEST(Cli, ReplayNeedsTheTokenWhenTheServerHasOne) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db"), .env = {{"LOSSGUARD_TOKEN", "abc"}}});
  CommandResult denied = RunCli({"replay", kSample, "--server", server.url()});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("server answered 401"));
  std::ofstream(dir.File("token")) << "abc\n";
  CommandResult allowed = RunCli(
      {"replay", kSample, "--server", server.url(), "--token-file", dir.File("token").string()});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
}

TEST(Cli, AlertsTableAndJson) {
  TempDir dir;
  {
    store::Store store(dir.File("db"));
    store.Ingest({MakeRecord("r1", 0, 83.7)});
    store::Alert alert =
        MakeAlert("r1", analyzers::Kind::kLossScaleMismatch, analyzers::Severity::kCritical,
                  "loss is 8.0x the token-normalised loss");
    alert.last_step = 12;
    store.alerts().Insert(alert);
  }
  ServerProcess server({.db = dir.File("db")});
  CommandResult table = RunCli({"alerts", "--server", server.url()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("KIND"));
  EXPECT_THAT(table.out, HasSubstr("loss_scale_mismatch"));
  EXPECT_THAT(table.out, HasSubstr("0-12"));
  EXPECT_THAT(table.out, HasSubstr("loss is 8.0x the token-normalised loss"));
  CommandResult json = RunCli({"alerts", "--server", server.url(), "--run", "r1", "--json"});
  ASSERT_EQ(json.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(json.out)["alerts"][0]["kind"], "loss_scale_mismatch");
  CommandResult none = RunCli({"alerts", "--server", server.url(), "--run", "other"});
  EXPECT_THAT(none.out, HasSubstr("no alerts for run other"));
}

TEST(Cli, ClearErrorsForBadInput) {
  CommandResult dead = RunCli({"alerts", "--server", "http://127.0.0.1:1"});
  EXPECT_EQ(dead.exit_code, 1);
  EXPECT_THAT(dead.err, HasSubstr("127.0.0.1:1"));
  CommandResult bad_url = RunCli({"alerts", "--server", "ftp://x"});
  EXPECT_EQ(bad_url.exit_code, 2);
  EXPECT_THAT(bad_url.err, HasSubstr("must start with http://"));
  CommandResult missing = RunCli({"replay", "/no/such/file.ndjson"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("/no/such/file.ndjson"));
  EXPECT_NE(RunCli({}).exit_code, 0);
}

}  // namespace cli_test
}  // namespace lossguard::testing
