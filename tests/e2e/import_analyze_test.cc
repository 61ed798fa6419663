// lossguard import (Hugging Face trainer_state.json), lossguard analyze (offline), and the
// analyzer flags and --config file of lossguard-server, against the real binaries.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace import_analyze_test {

using nlohmann::json;
using ::testing::HasSubstr;
const std::string kSource = LOSSGUARD_SOURCE_DIR;
const std::string kTrainerState = kSource + "/tests/fixtures/trainer_state_ga_bug.json";

CommandResult RunBinary(const std::string& binary, std::vector<std::string> args) {
  args.insert(args.begin(), binary);
  return RunCommand(args, std::chrono::seconds(60));
}

json Get(const std::string& url, const std::string& target) {
  client::HttpClient client(url);
  auto response = client.Get(target);
  EXPECT_EQ(response.status, 200) << response.body;
  return json::parse(response.body);
}

TEST(Import, HuggingFaceTrainerStateBecomesARunAndItsBugIsFound) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  CommandResult result = RunCli({"import", kTrainerState, "--run", "hf-job", "--ga-steps", "8",
                                 "--vocab-size", "32000", "--server", server.url()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("imported 30 records as run hf-job (skipped 3 log entries"));

  json run = Get(server.url(), "/api/v1/runs/hf-job")["run"];
  EXPECT_EQ(run["records"], 30);
  EXPECT_EQ(run["config"]["micro_batch_size"], 1) << "from the file's train_batch_size";
  json nan_step = Get(server.url(), "/api/v1/runs/hf-job/steps?from=26&to=26")["steps"][0];
  EXPECT_EQ(nan_step["loss"], "NaN") << "Python's bare NaN is data, not an error";
  EXPECT_EQ(nan_step["lr"], 2e-5);

  json alerts = Get(server.url(), "/api/v1/alerts?run=hf-job")["alerts"];
  ASSERT_EQ(alerts.size(), 2u) << alerts.dump();
  EXPECT_EQ(alerts[0]["kind"], "loss_scale_mismatch");
  EXPECT_EQ(alerts[0]["first_step"], 3) << "three steps confirm it";
  EXPECT_EQ(alerts[0]["evidence"]["explained_by"], "ga_steps");
  EXPECT_THAT(alerts[0]["message"].get<std::string>(),
              HasSubstr("summed over ga_steps=8 without dividing"));
  EXPECT_EQ(alerts[1]["kind"], "nonfinite");
  EXPECT_EQ(alerts[1]["first_step"], 26);

  // Importing again changes nothing: the records are keyed by (run, step, rank).
  CommandResult again = RunCli({"import", kTrainerState, "--run", "hf-job", "--ga-steps", "8",
                                "--vocab-size", "32000", "--server", server.url()});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("30 duplicates"));
  EXPECT_EQ(Get(server.url(), "/api/v1/alerts?run=hf-job")["alerts"].size(), 2u);
}

TEST(Import, BadFilesAreRefusedWithTheirReasonAndNothingIsSent) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.File(name)) << text;
    return dir.File(name).string();
  };
  struct Case {
    std::string file;
    std::vector<std::string> extra;
    std::string message;
  };
  const std::vector<Case> cases = {
      {write("not.json", "{\"log_history\": [ {\"loss\": 1.0,"), {}, "is not JSON"},
      {write("no-history.json", "{\"global_step\": 3}"), {}, "no \"log_history\" array"},
      {write("bad-loss.json",
             R"({"train_batch_size": 2, "log_history": [{"loss": 2.0, "step": 1},
                 {"loss": "abc", "step": 2}]})"),
       {},
       "log_history[1].loss must be a number, but got \"abc\""},
      {write("bad-step.json", R"({"train_batch_size": 2, "log_history": [{"loss": 2.0}]})"),
       {},
       "log_history[0].step must be an integer, but got nothing"},
      {write("no-batch.json", R"({"log_history": [{"loss": 2.0, "step": 1}]})"),
       {},
       "--micro-batch-size is required"},
      {write("eval-only.json", R"({"train_batch_size": 2, "log_history": [{"eval_loss": 2.0,
         "step": 1}]})"),
       {},
       "no entry with a training loss"},
      {kTrainerState, {"--world-size", "2", "--run", "bad name!"}, "log_history[0]: run"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    std::vector<std::string> args = {"import", c.file, "--ga-steps", "2", "--server", server.url()};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    if (std::find(c.extra.begin(), c.extra.end(), "--run") == c.extra.end()) {
      args.insert(args.end(), {"--run", "x"});
    }
    CommandResult result = RunCli(args);
    EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
    EXPECT_THAT(result.err, HasSubstr(c.message));
    EXPECT_THAT(result.err, HasSubstr("nothing was sent"));
  }
  EXPECT_TRUE(Get(server.url(), "/api/v1/runs")["runs"].empty());
}

TEST(Analyze, OfflineAnalysisAgreesWithTheServer) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  for (const std::string run : {"bug-ga-change.minimal", "bug-lr-spike", "healthy-mb2-ga2-ws2"}) {
    SCOPED_TRACE(run);
    const std::string file = kSource + "/tests/scenarios/" + run + ".ndjson";
    CommandResult offline = RunCli({"analyze", file, "--json"});
    ASSERT_EQ(offline.exit_code, 0) << offline.err;
    ASSERT_EQ(RunCli({"replay", file, "--server", server.url(), "--batch-size", "10"}).exit_code,
              0);
    json online = Get(server.url(), "/api/v1/alerts?run=" + run)["alerts"];
    json local = json::parse(offline.out)["alerts"];
    ASSERT_EQ(local.size(), online.size());
    for (std::size_t i = 0; i < local.size(); ++i) {
      for (const char* field :
           {"kind", "severity", "state", "first_step", "last_step", "message"}) {
        EXPECT_EQ(local[i][field], online[i][field]) << field;
      }
    }
  }
  CommandResult table = RunCli({"analyze", kSource + "/tests/scenarios/bug-nan.ndjson"});
  EXPECT_THAT(table.out, HasSubstr("nonfinite"));
  EXPECT_THAT(table.out, HasSubstr("60-99"));
}

TEST(AnalyzerFlags, ThresholdsComeFromFlagsOrAConfigFileAndBadOnesAreRefused) {
  TempDir dir;
  CommandResult never = RunCli(
      {"analyze", kSource + "/tests/scenarios/bug-nan.ndjson", "--loss-spike-min-history", "500"});
  EXPECT_EQ(never.exit_code, 2);
  EXPECT_THAT(never.err, HasSubstr("--loss-spike-min-history 500 exceeds --loss-spike-window 128"));

  CommandResult server_never =
      RunBinary(LOSSGUARD_SERVER_BINARY, {"--db", dir.File("a.db").string(), "--listen",
                                          "127.0.0.1:0", "--grad-explosion-window", "10"});
  EXPECT_EQ(server_never.exit_code, 2);
  EXPECT_THAT(server_never.err, HasSubstr("--grad-explosion-min-history 20 exceeds"));

  std::ofstream(dir.File("unknown.toml")) << "loss-spike-sigma = 3\n";  // typo: sigmas
  CommandResult unknown =
      RunBinary(LOSSGUARD_SERVER_BINARY,
                {"--db", dir.File("b.db").string(), "--config", dir.File("unknown.toml")});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("loss-spike-sigma"));

  // A config file that turns a detector's threshold so high it cannot fire, and one that turns
  // the analyzers off: the same NaN step raises nothing.
  std::ofstream(dir.File("off.toml")) << "analyzers = \"off\"\n";
  ServerProcess off({.db = dir.File("off.db"), .extra_args = {"--config", dir.File("off.toml")}});
  std::ofstream(dir.File("strict.toml"))
      << "loss-spike-sigmas = 1000\nloss-spike-min-ratio = 1e6\n";
  ServerProcess strict(
      {.db = dir.File("strict.db"), .extra_args = {"--config", dir.File("strict.toml")}});
  const std::string nan_run = kSource + "/tests/scenarios/bug-nan.ndjson";
  const std::string spike_run = kSource + "/tests/scenarios/bug-bad-data.minimal.ndjson";
  for (ServerProcess* s : {&off, &strict}) {
    ASSERT_EQ(RunCli({"replay", nan_run, "--server", s->url()}).exit_code, 0);
    ASSERT_EQ(RunCli({"replay", spike_run, "--server", s->url()}).exit_code, 0);
  }
  EXPECT_TRUE(Get(off.url(), "/api/v1/alerts")["alerts"].empty());
  json strict_alerts = Get(strict.url(), "/api/v1/alerts")["alerts"];
  std::set<std::string> kinds;
  for (const json& a : strict_alerts) kinds.insert(a["kind"]);
  EXPECT_TRUE(kinds.count("nonfinite")) << "other detectors keep their defaults";
  EXPECT_FALSE(kinds.count("loss_spike")) << "the config file's thresholds apply";
}

}  // namespace import_analyze_test
}  // namespace lossguard::testing
