// Collector: the record it builds from a real accumulation window, its local check, and delivery
// to the real server.
#include "lossguard/collector/collector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "collector/tiny_lm.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::collector {
namespace {

using ::testing::HasSubstr;

// One step of micro_batch 1 / GA 8 on the tiny model; returns the window after backward.
std::unique_ptr<AccumulationWindow> TrainStep(TinyLm& model, const Data& data,
                                              double& summed_means) {
  std::vector<torch::Tensor> labels;
  for (int i = 0; i < 8; ++i) labels.push_back(data.labels.slice(0, i, i + 1));
  auto window = std::make_unique<AccumulationWindow>(labels);
  model->zero_grad();
  summed_means = 0;
  for (int i = 0; i < 8; ++i) {
    auto logits = model->forward(data.ids.slice(0, i, i + 1));
    window->Loss(i, logits).backward();
    summed_means += CausalLmCrossEntropy(logits.detach(), labels[i]).item<double>();
  }
  return window;
}

struct Captured {
  std::vector<std::string> lines;
  std::function<void(std::string_view)> Sink() {
    return [this](std::string_view line) { lines.emplace_back(line); };
  }
  std::string All() const {
    std::string out;
    for (const auto& line : lines) out += line + "\n";
    return out;
  }
};

TEST(Collector, BuildsTheRecordFromTheWindowAndFlagsTheGaBugLocally) {
  Data data = MakeData();
  TinyLm model = FreshModel();
  Captured warnings;
  Collector collector(
      CollectorOptions().run("local").micro_batch_size(1).vocab_size(kVocab).warn(warnings.Sink()));
  double summed_means = 0;
  auto window = TrainStep(model, data, summed_means);
  GradNormStats grads = ComputeGradNorm(model->parameters());
  // The Axolotl pattern: micro-batch means summed over GA without dividing.
  wire::StepRecord record = collector.RecordStep(3, summed_means, *window, grads, 3e-4);

  EXPECT_EQ(record.run, "local");
  EXPECT_EQ(record.step, 3);
  EXPECT_EQ(record.ga_steps, 8);
  EXPECT_EQ(record.world_size, 1);
  EXPECT_EQ(record.micro_batch_size, 1);
  EXPECT_EQ(record.vocab_size, kVocab);
  EXPECT_EQ(record.loss, summed_means);
  EXPECT_NEAR(*record.ref_loss, window->ReferenceLoss(), 1e-12);
  EXPECT_EQ(*record.tokens, window->global_tokens());
  ASSERT_EQ(record.micro.size(), 8u);
  std::int64_t tokens = 0;
  for (const auto& mb : record.micro) tokens += mb.tokens;
  EXPECT_EQ(tokens, *record.tokens);
  EXPECT_DOUBLE_EQ(*record.grad_norm, grads.total_norm);
  EXPECT_EQ(*record.nonfinite_grads, 0);
  EXPECT_DOUBLE_EQ(*record.lr, 3e-4);
  EXPECT_GT(*record.time, 1.7e9);

  ASSERT_EQ(warnings.lines.size(), 1u) << warnings.All();
  EXPECT_THAT(warnings.lines[0], HasSubstr("step 3: the reported loss"));
  EXPECT_THAT(
      warnings.lines[0],
      HasSubstr(
          "matches ga_steps: micro-batch losses are summed over ga_steps=8 without dividing"));

  // The same mismatch on the next step is not repeated.
  auto again = TrainStep(model, data, summed_means);
  collector.RecordStep(4, summed_means, *again, ComputeGradNorm(model->parameters()));
  EXPECT_EQ(warnings.lines.size(), 1u);
}

TEST(Collector, ACorrectLossRaisesNothingAndNaNIsReportedOnce) {
  Data data = MakeData();
  TinyLm model = FreshModel();
  Captured warnings;
  Collector collector(CollectorOptions().run("quiet").warn(warnings.Sink()));
  double summed_means = 0;
  auto window = TrainStep(model, data, summed_means);
  collector.RecordStep(0, window->ReferenceLoss(), *window, ComputeGradNorm(model->parameters()));
  EXPECT_EQ(warnings.All(), "");

  auto nan_window = TrainStep(model, data, summed_means);
  wire::StepRecord record =
      collector.RecordStep(1, std::nan(""), *nan_window, ComputeGradNorm(model->parameters()));
  EXPECT_TRUE(std::isnan(record.loss)) << "a NaN loss is data: kept as it is";
  EXPECT_THAT(warnings.All(), HasSubstr("step 1: non-finite values (loss nan"));
}

// A mean of micro-batch means sits near the local check's tolerance and crosses it back and
// forth: one line for the episode, not one per crossing; a new line only after it has been clear
// for local_check_clear_steps steps.
TEST(Collector, TheLocalCheckSaysOncePerEpisodeWhenTheRatioHoversAroundItsTolerance) {
  Captured warnings;
  Collector collector(
      CollectorOptions().run("hovering").local_check_clear_steps(20).warn(warnings.Sink()));
  auto submit = [&](std::int64_t step, double ratio) {
    wire::StepRecord record;
    record.run = "hovering";
    record.step = step;
    record.loss = 2.0 * ratio;
    record.ref_loss = 2.0;
    collector.Submit(record);
  };
  for (int step = 0; step < 200; ++step) submit(step, step % 3 == 0 ? 1.02 : 1.005);
  submit(200, 1.02);
  ASSERT_EQ(warnings.lines.size(), 1u) << warnings.All();
  EXPECT_THAT(warnings.lines[0], HasSubstr("step 0: the reported loss 2.04 is 1.02x"));
  for (int step = 201; step < 220; ++step) submit(step, 1.0);
  submit(220, 1.5);  // 19 clear steps: still the same episode
  EXPECT_EQ(warnings.lines.size(), 1u) << warnings.All();
  for (int step = 221; step < 241; ++step) submit(step, 1.0);
  submit(241, 1.5);  // after 20 clear steps: a new episode
  ASSERT_EQ(warnings.lines.size(), 2u) << warnings.All();
  EXPECT_THAT(warnings.lines[1], HasSubstr("step 241: the reported loss 3 is 1.5x"));
}

TEST(Collector, TheLocalCheckSummarisesALastingEpisodeAtItsInterval) {
  Captured warnings;
  Collector collector(CollectorOptions()
                          .run("lasting")
                          .local_check_summary_interval(std::chrono::seconds(0))
                          .warn(warnings.Sink()));
  for (int step = 0; step < 3; ++step) {
    wire::StepRecord record;
    record.run = "lasting";
    record.step = step;
    record.loss = 16.0;
    record.ref_loss = 2.0;
    collector.Submit(record);
  }
  ASSERT_EQ(warnings.lines.size(), 3u) << warnings.All();
  EXPECT_THAT(warnings.lines[2], HasSubstr("step 2: the reported loss is still off the "
                                           "token-normalised loss (8x now; 1 of 1 steps since "
                                           "the last message, since step 0)"));
  EXPECT_THROW(Collector(CollectorOptions().run("x").local_check_clear_steps(0)),
               std::invalid_argument);
}

TEST(Collector, StreamsRecordsToTheServer) {
  lossguard::testing::TempDir dir;
  lossguard::testing::ServerProcess server({.db = dir.File("db")});
  Data data = MakeData();
  TinyLm model = FreshModel();
  CollectorOptions options =
      CollectorOptions().run("streamed").micro_batch_size(1).vocab_size(kVocab);
  options.stream().server_url(server.url());
  Collector collector(options);
  for (int step = 0; step < 5; ++step) {
    double summed_means = 0;
    auto window = TrainStep(model, data, summed_means);
    collector.RecordStep(step, window->ReferenceLoss(), *window,
                         ComputeGradNorm(model->parameters()));
  }
  ASSERT_TRUE(collector.Flush(std::chrono::seconds(20)));
  client::HttpClient client(server.url());
  auto steps = nlohmann::json::parse(client.Get("/api/v1/runs/streamed/steps").body)["steps"];
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(steps[4]["ga_steps"], 8);
  EXPECT_EQ(steps[4]["micro"].size(), 8u);
  EXPECT_EQ(steps[4]["loss"], steps[4]["ref_loss"]);
}

TEST(Collector, BadOptionsFailBeforeTraining) {
  EXPECT_THROW(Collector(CollectorOptions().run("has space")), std::invalid_argument);
  EXPECT_THROW(Collector(CollectorOptions().run("")), std::invalid_argument);
  EXPECT_THROW(Collector(CollectorOptions().run("ok").micro_batch_size(0)), std::invalid_argument);
}

}  // namespace
}  // namespace lossguard::collector
