// The guard in a real training loop: the C++ demo trainer with --guard against the real server.
// Each test trains a real model; what the trainer did is read from its records (--out), what the
// server saw from its REST API.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lossguard/client/http_client.h"
#include "lossguard/collector/guard_policy.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

struct Trained {
  CommandResult result;
  std::vector<json> records;
  // Steps whose record carries a guard action, by action name.
  std::map<std::string, std::vector<std::int64_t>> actions;
};

Trained TrainGuarded(const TempDir& dir, const std::string& run, std::vector<std::string> args) {
  const std::string out = dir.File(run + ".ndjson").string();
  std::vector<std::string> argv = {LOSSGUARD_DEMO_TRAINER, "--quiet", "--run", run, "--out", out};
  argv.insert(argv.end(), args.begin(), args.end());
  if (std::find(args.begin(), args.end(), "--flush-timeout-s") == args.end())
    argv.insert(argv.end(), {"--flush-timeout-s", "10"});
  Trained trained;
  trained.result = RunCommand(argv, std::chrono::seconds(300));
  std::ifstream in(out);
  for (std::string line; std::getline(in, line);) {
    trained.records.push_back(json::parse(line));
    const json& record = trained.records.back();
    if (record.contains("guard"))
      trained.actions[record["guard"]["action"]].push_back(record["step"].get<std::int64_t>());
  }
  return trained;
}

double MeanLoss(const std::vector<json>& records, std::size_t last) {
  double sum = 0;
  for (std::size_t i = records.size() - last; i < records.size(); ++i)
    sum += JsonNumber(records[i]["ref_loss"]);
  return sum / static_cast<double>(last);
}

json Alerts(const ServerProcess& server, const std::string& run) {
  client::HttpClient client(server.url());
  return json::parse(client.Get("/api/v1/alerts?state=all&run=" + run).body)["alerts"];
}

// The delay is measured from the step the server had judged through when it gave the verdict (the
// action's seen_through) to the step the trainer acted at.
TEST(DemoGuard, TheGaBugWithStopEndsTheRunWithinThreeStepsOfTheServersCriticalAlert) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  // local=off: the server's verdict alone (the local fast path would stop it at step 2 without
  // the server; tested below).
  Trained stopped = TrainGuarded(
      dir, "ga-bug-stop",
      {"--server", server.url(), "--micro-batch-size", "1", "--ga-steps", "8", "--loss",
       "sum-no-ga-div", "--steps", "200", "--guard", "loss_scale_mismatch=stop,local=off",
       "--checkpoint-dir", dir.File("ckpt").string()});
  ASSERT_EQ(stopped.result.exit_code, collector::kGuardStopExitCode) << stopped.result.err;
  EXPECT_THAT(stopped.result.err, HasSubstr("stopped by lossguard's guard at step"));
  EXPECT_THAT(stopped.result.err, HasSubstr("critical loss_scale_mismatch"));
  ASSERT_EQ(stopped.actions["stop"].size(), 1u);
  const json& last = stopped.records.back();
  ASSERT_TRUE(last.contains("guard"));
  EXPECT_EQ(last["guard"]["source"], "server");
  const std::int64_t stop_step = last["step"];
  const std::int64_t judged = last["guard"]["seen_through"];
  EXPECT_LE(stop_step - judged, 3) << "the verdict reached the trainer within 3 steps";
  EXPECT_LT(stop_step, 20) << "the server confirms a factor over 3 steps";
  EXPECT_TRUE(std::filesystem::exists(
      dir.File("ckpt/stopped-at-step-" + std::to_string(stop_step) + ".model.pt")));

  // The alert shows who acted, when and how.
  json alerts = Alerts(server, "ga-bug-stop");
  bool shown = false;
  for (const json& alert : alerts) {
    if (alert["kind"] != "loss_scale_mismatch") continue;
    ASSERT_EQ(alert["actions"].size(), 1u) << alert.dump();
    EXPECT_EQ(alert["actions"][0]["action"], "stop");
    EXPECT_EQ(alert["actions"][0]["step"], stop_step);
    EXPECT_EQ(alert["actions"][0]["episode"], alert["id"]);
    shown = true;
  }
  EXPECT_TRUE(shown) << alerts.dump();
  client::HttpClient client(server.url());
  json listed = json::parse(client.Get("/api/v1/runs/ga-bug-stop/guard-actions").body);
  ASSERT_EQ(listed["actions"].size(), 1u) << listed.dump();
  EXPECT_THAT(client.Get("/metrics").body,
              HasSubstr("lossguard_guard_actions_total{action=\"stop\"} 1"));

  // With warn the same run trains to the end, the verdict noted once.
  Trained warned = TrainGuarded(
      dir, "ga-bug-warn",
      {"--server", server.url(), "--micro-batch-size", "1", "--ga-steps", "8", "--loss",
       "sum-no-ga-div", "--steps", "60", "--guard", "loss_scale_mismatch=warn"});
  EXPECT_EQ(warned.result.exit_code, 0) << warned.result.err;
  EXPECT_EQ(warned.records.size(), 60u);
  EXPECT_EQ(warned.actions["warn"].size(), 1u);
}

TEST(DemoGuard, WithTheServerDownTheLocalFastPathStillStopsTheGaBugAndNothingWaits) {
  TempDir dir;
  const auto started = std::chrono::steady_clock::now();
  // Port 1 on loopback: nothing listens.
  Trained stopped = TrainGuarded(
      dir, "ga-bug-offline",
      {"--server", "http://127.0.0.1:1", "--spool-dir", dir.File("spool").string(),
       "--micro-batch-size", "1", "--ga-steps", "8", "--loss", "sum-no-ga-div", "--steps", "200",
       "--guard", "loss_scale_mismatch=stop", "--flush-timeout-s", "1"});
  ASSERT_EQ(stopped.result.exit_code, collector::kGuardStopExitCode) << stopped.result.err;
  ASSERT_EQ(stopped.actions["stop"].size(), 1u);
  EXPECT_EQ(stopped.records.back()["guard"]["source"], "local");
  EXPECT_EQ(stopped.records.back()["step"], 2) << "three mismatching steps confirm it";
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));

  // A healthy run with the server down trains to the end at its own pace.
  Trained healthy = TrainGuarded(
      dir, "healthy-offline",
      {"--server", "http://127.0.0.1:1", "--spool-dir", dir.File("spool").string(), "--steps",
       "100", "--guard", "*=stop,nonfinite=skip_step", "--flush-timeout-s", "1"});
  EXPECT_EQ(healthy.result.exit_code, 0) << healthy.result.err;
  EXPECT_EQ(healthy.records.size(), 100u);
  EXPECT_TRUE(healthy.actions.empty());
}

TEST(DemoGuard, ANanLossIsSkippedLocallyAndTrainingGoesOnWithFiniteWeights) {
  TempDir dir;
  Trained trained = TrainGuarded(
      dir, "nan-skip",
      {"--server", "http://127.0.0.1:1", "--spool-dir", dir.File("spool").string(), "--steps", "30",
       "--nan-at", "10", "--guard", "nonfinite=skip_step", "--flush-timeout-s", "1"});
  ASSERT_EQ(trained.result.exit_code, 0) << trained.result.err;
  ASSERT_EQ(trained.records.size(), 30u);
  EXPECT_EQ(trained.actions["skip_step"], std::vector<std::int64_t>{10});
  EXPECT_EQ(trained.records[10]["guard"]["source"], "local");
  for (std::size_t step = 11; step < 30; ++step) {
    EXPECT_TRUE(std::isfinite(JsonNumber(trained.records[step]["loss"]))) << step;
    EXPECT_TRUE(std::isfinite(JsonNumber(trained.records[step]["grad_norm"]))) << step;
  }
  EXPECT_LT(JsonNumber(trained.records[29]["loss"]), JsonNumber(trained.records[0]["loss"]))
      << "it kept learning";

  // Without the guard the NaN reaches the weights: every later loss is NaN.
  Trained unguarded = TrainGuarded(dir, "nan-unguarded", {"--steps", "15", "--nan-at", "10"});
  ASSERT_EQ(unguarded.records.size(), 15u);
  EXPECT_TRUE(std::isnan(JsonNumber(unguarded.records[12]["loss"])));
}

TEST(DemoGuard, AnLrBlowUpIsRolledBackAndTheRunEndsWhereAnUnbrokenOneDoes) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  // Micro-batches of 4 sequences: half the demo's default step, the same story.
  const std::vector<std::string> common = {
      "--server", server.url(),         "--steps", "240", "--micro-batch-size",
      "4",        "--checkpoint-every", "20"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = common;
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  const std::vector<std::string> blow_up = {"--lr-spike-at",    "120", "--lr-spike-factor", "100",
                                            "--lr-spike-steps", "3"};
  const std::string policy = "grad_explosion:warning=rollback,loss_spike:warning=rollback";
  Trained unbroken = TrainGuarded(dir, "lr-unbroken", with({"--guard", policy}));
  ASSERT_EQ(unbroken.result.exit_code, 0) << unbroken.result.err;
  EXPECT_TRUE(unbroken.actions.empty()) << "no action on a healthy run";

  std::vector<std::string> rollback_args = with(blow_up);
  rollback_args.insert(rollback_args.end(),
                       {"--guard", policy, "--checkpoint-dir", dir.File("ckpt").string()});
  Trained rolled = TrainGuarded(dir, "lr-rollback", rollback_args);
  ASSERT_EQ(rolled.result.exit_code, 0) << rolled.result.err;
  ASSERT_FALSE(rolled.actions["rollback"].empty()) << rolled.result.err;
  const json& first = rolled.records[rolled.actions["rollback"][0]]["guard"];
  EXPECT_LE(first["rollback_to"].get<std::int64_t>(), 120) << first.dump();

  std::vector<std::string> warn_args = with(blow_up);
  warn_args.insert(warn_args.end(), {"--guard", "*:warning=warn"});
  Trained warned = TrainGuarded(dir, "lr-warn", warn_args);
  ASSERT_EQ(warned.result.exit_code, 0) << warned.result.err;

  const double unbroken_loss = MeanLoss(unbroken.records, 20);
  const double rolled_loss = MeanLoss(rolled.records, 20);
  const double warned_loss = MeanLoss(warned.records, 20);
  EXPECT_LT(std::abs(rolled_loss / unbroken_loss - 1), 0.10)
      << "rolled back " << rolled_loss << " vs unbroken " << unbroken_loss;
  EXPECT_GT(warned_loss, rolled_loss) << "the blow-up left its mark without the rollback";

  // The episode shows the rollback.
  bool shown = false;
  for (const json& alert : Alerts(server, "lr-rollback"))
    for (const json& action : alert["actions"]) shown = shown || action["action"] == "rollback";
  EXPECT_TRUE(shown) << Alerts(server, "lr-rollback").dump();
}

TEST(DemoGuard, AHealthyNoisyMicroBatchOneRunWithEveryPolicyOnTakesNoAction) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  Trained trained =
      TrainGuarded(dir, "healthy-mb1",
                   {"--server", server.url(), "--micro-batch-size", "1", "--ga-steps", "1",
                    "--steps", "2000", "--warmup-steps", "50", "--cosine", "--checkpoint-dir",
                    dir.File("ckpt").string(), "--checkpoint-every", "200", "--guard",
                    "nonfinite=skip_step,loss_scale_mismatch=stop,grad_explosion=rollback,"
                    "loss_spike=lower_lr,*=stop"});
  ASSERT_EQ(trained.result.exit_code, 0) << trained.result.err;
  EXPECT_EQ(trained.records.size(), 2000u);
  EXPECT_TRUE(trained.actions.empty()) << trained.result.err;
}

TEST(DemoGuard, ABadPolicyIsRefusedBeforeTraining) {
  CommandResult bad =
      RunCommand({LOSSGUARD_DEMO_TRAINER, "--guard", "loss_scale=stop"}, std::chrono::seconds(30));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("unknown kind \"loss_scale\""));
}

}  // namespace
}  // namespace lossguard::testing
