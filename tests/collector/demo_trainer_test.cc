// The demo trainer binary: the split of the effective batch does not change the training, and each
// bug pattern shows the way the public reports describe it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lossguard/client/http_client.h"
#include "lossguard/client/spool.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::vector<json> Train(const TempDir& dir, const std::string& name, std::vector<std::string> args,
                        const std::string& suffix = "") {
  std::string out = dir.File(name + ".ndjson").string();
  std::vector<std::string> argv = {
      LOSSGUARD_DEMO_TRAINER, "--quiet", "--steps", "8", "--out", out, "--run", name};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result = RunCommand(argv, std::chrono::seconds(120));
  EXPECT_EQ(result.exit_code, 0) << name << ": " << result.err;
  std::vector<json> records;
  std::ifstream in(out + suffix);
  for (std::string line; std::getline(in, line);) records.push_back(json::parse(line));
  return records;
}

TEST(DemoTrainer, HowTheEffectiveBatchIsSplitDoesNotChangeTraining) {
  TempDir dir;
  auto mb8 = Train(dir, "mb8", {"--micro-batch-size", "8", "--ga-steps", "1"});
  auto mb1 = Train(dir, "mb1", {"--micro-batch-size", "1", "--ga-steps", "8"});
  auto ddp = Train(dir, "ddp", {"--micro-batch-size", "2", "--ga-steps", "2", "--world-size", "2"},
                   ".rank1");
  ASSERT_EQ(mb8.size(), 8u);
  ASSERT_EQ(mb1.size(), 8u);
  ASSERT_EQ(ddp.size(), 8u);
  for (std::size_t s = 0; s < 8; ++s) {
    for (const auto* other : {&mb1, &ddp}) {
      const json& r = (*other)[s];
      EXPECT_NEAR(JsonNumber(r["loss"]), JsonNumber(mb8[s]["loss"]),
                  1e-5 * JsonNumber(mb8[s]["loss"]))
          << "step " << s;
      EXPECT_NEAR(JsonNumber(r["grad_norm"]), JsonNumber(mb8[s]["grad_norm"]),
                  1e-5 * JsonNumber(mb8[s]["grad_norm"]))
          << "step " << s;
    }
  }
  EXPECT_EQ(mb1[0]["ga_steps"], 8);
  EXPECT_EQ(mb1[0]["micro"].size(), 8u);
  EXPECT_EQ(ddp[0]["world_size"], 2);
  EXPECT_EQ(ddp[0]["rank"], 1);
  EXPECT_NEAR(JsonNumber(mb8[0]["loss"]), std::log(96.0), 0.3)
      << "a causal LM starts near ln(vocab_size)";
}

TEST(DemoTrainer, TheFusedLossTrainsAsTheUnfusedOne) {
  // --loss-impl fused (the default) takes the hidden states through LinearCrossEntropy, unfused
  // the head's logits through CausalLmCrossEntropy: the same training up to float32 rounding, for
  // a correct trainer and for a bug pattern.
  TempDir dir;
  for (const std::string loss : {"correct", "sum-no-ga-div"}) {
    std::vector<std::string> args = {"--micro-batch-size", "2", "--ga-steps", "4", "--loss", loss};
    auto fused = Train(dir, "fused-" + loss, args);
    args.insert(args.end(), {"--loss-impl", "unfused"});
    auto unfused = Train(dir, "unfused-" + loss, args);
    ASSERT_EQ(fused.size(), 8u);
    ASSERT_EQ(unfused.size(), 8u);
    for (std::size_t s = 0; s < 8; ++s) {
      for (const char* field : {"loss", "ref_loss", "grad_norm"}) {
        EXPECT_NEAR(JsonNumber(fused[s][field]), JsonNumber(unfused[s][field]),
                    1e-4 * JsonNumber(unfused[s][field]))
            << loss << " step " << s << " " << field;
      }
    }
  }
}

TEST(DemoTrainer, BugPatternsShowAsTheReportsDescribe) {
  TempDir dir;
  auto ratio = [](const json& r) { return JsonNumber(r["loss"]) / JsonNumber(r["ref_loss"]); };
  auto sum_no_div = Train(
      dir, "axolotl", {"--micro-batch-size", "1", "--ga-steps", "8", "--loss", "sum-no-ga-div"});
  ASSERT_FALSE(sum_no_div.empty());
  EXPECT_NEAR(ratio(sum_no_div[0]), 8.0, 0.4)
      << "micro-batch means summed over GA 8 without dividing";
  auto mean_of_means =
      Train(dir, "mom", {"--micro-batch-size", "1", "--ga-steps", "8", "--loss", "mean-of-means"});
  ASSERT_FALSE(mean_of_means.empty());
  double worst = 0;
  for (const json& r : mean_of_means) worst = std::max(worst, std::abs(ratio(r) - 1));
  EXPECT_GT(worst, 1e-4) << "per-micro-batch means weight tokens unequally";
  EXPECT_LT(worst, 0.2);
  auto per_sequence = Train(
      dir, "perseq", {"--micro-batch-size", "4", "--ga-steps", "2", "--loss", "per-sequence"});
  ASSERT_FALSE(per_sequence.empty());
  EXPECT_GT(ratio(per_sequence[0]), 10)
      << "dividing by sequences instead of tokens: ~tokens per sequence";
}

TEST(DemoTrainer, InjectedFaultsShowUpInTheRecords) {
  TempDir dir;
  auto nan = Train(dir, "nan", {"--nan-at", "3"});
  ASSERT_EQ(nan.size(), 8u);
  EXPECT_EQ(nan[3]["loss"], "NaN");
  EXPECT_EQ(nan[3]["grad_norm"], "NaN");
  EXPECT_GT(nan[3]["nonfinite_grads"].get<std::int64_t>(), 0);
  auto detached = Train(dir, "detached", {"--detach-loss-at", "2"});
  ASSERT_EQ(detached.size(), 8u);
  EXPECT_EQ(JsonNumber(detached[2]["grad_norm"]), 0.0) << "no gradient reaches the model";
  EXPECT_GT(JsonNumber(detached[2]["loss"]), 0.0);
  auto spike = Train(dir, "spike", {"--lr-spike-at", "4", "--lr-spike-factor", "300"});
  ASSERT_EQ(spike.size(), 8u);
  EXPECT_GT(JsonNumber(spike[5]["loss"]), 1.5 * JsonNumber(spike[4]["loss"]))
      << "an lr spike wrecks the next step";
}

TEST(DemoTrainer, StreamsToTheServerAndRefusesBadFlags) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  auto records = Train(dir, "streamed", {"--server", server.url()});
  ASSERT_EQ(records.size(), 8u);
  // What the server stored is what the trainer wrote to --out, record by record.
  client::HttpClient client(server.url());
  auto page = json::parse(client.Get("/api/v1/runs/streamed/steps?from=0").body);
  ASSERT_EQ(page["steps"].size(), 8u) << page.dump();
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(page["steps"][i]["step"], records[i]["step"]);
    EXPECT_EQ(page["steps"][i]["loss"], records[i]["loss"]);
    EXPECT_EQ(page["steps"][i]["ref_loss"], records[i]["ref_loss"]);
    EXPECT_EQ(page["steps"][i]["tokens"], records[i]["tokens"]);
  }
  CommandResult bad =
      RunCommand({LOSSGUARD_DEMO_TRAINER, "--loss", "wrong"}, std::chrono::seconds(30));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err + bad.out, HasSubstr("--loss"));
  CommandResult zero =
      RunCommand({LOSSGUARD_DEMO_TRAINER, "--ga-steps", "0"}, std::chrono::seconds(30));
  EXPECT_NE(zero.exit_code, 0);
}

// A trainer that ends while the server is down leaves its records in the default per-run spool;
// `lossguard flush` delivers them once, and skips a spool a running trainer still holds.
TEST(DemoTrainer, RecordsOfAnOutageWaitInTheDefaultSpoolUntilFlushed) {
  TempDir dir;
  const std::string spool_dir = dir.File("spools").string();
  // Port 1 on loopback: nothing listens.
  CommandResult trained =
      RunCommand({LOSSGUARD_DEMO_TRAINER, "--quiet", "--steps", "12", "--run", "outage", "--server",
                  "http://127.0.0.1:1", "--flush-timeout-s", "1"},
                 std::chrono::seconds(120), {{"LOSSGUARD_SPOOL_DIR", spool_dir}});
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const std::string spool = spool_dir + "/outage/rank-0.ndjson";
  EXPECT_THAT(trained.err, HasSubstr("the rest waits in " + spool));
  ASSERT_TRUE(std::filesystem::exists(spool));

  ServerProcess server({.db = dir.File("db")});
  {
    client::Spool held(dir.File("spools/other/rank-0.ndjson"), 1 << 20);  // a trainer still running
    ASSERT_EQ(
        held.Append({R"({"run":"other","step":0,"ga_steps":1,"micro_batch_size":1,"loss":1})"}),
        1u);
    CommandResult busy =
        RunCommand({LOSSGUARD_CLI_BINARY, "flush", spool_dir, "--server", server.url()},
                   std::chrono::seconds(60));
    EXPECT_EQ(busy.exit_code, 1);
    EXPECT_THAT(busy.err, HasSubstr("open in another process"));
    EXPECT_THAT(busy.out, HasSubstr("flushed " + spool + ": 12 records"));
  }
  CommandResult again =
      RunCommand({LOSSGUARD_CLI_BINARY, "flush", spool_dir, "--server", server.url()},
                 std::chrono::seconds(60));
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("2 spools, 1 records sent"))
      << "the flushed spool sends nothing twice; the released one is delivered now";
  CommandResult runs = RunCommand({LOSSGUARD_CLI_BINARY, "alerts", "--server", server.url()},
                                  std::chrono::seconds(30));
  EXPECT_EQ(runs.exit_code, 0);
  client::HttpClient client(server.url());
  EXPECT_EQ(json::parse(client.Get("/api/v1/runs/outage").body)["run"]["records"], 12);
  CommandResult missing = RunCommand({LOSSGUARD_CLI_BINARY, "flush", dir.File("nothing").string()},
                                     std::chrono::seconds(30));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("is not a directory"));
}

}  // namespace
}  // namespace lossguard::testing
