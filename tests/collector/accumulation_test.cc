#include "lossguard/collector/accumulation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "collector/gloo_ranks.h"
#include "collector/tiny_lm.h"

namespace lossguard::collector {
namespace {

using ::testing::HasSubstr;
struct StepResult {
  double ref_loss;
  std::vector<torch::Tensor> grads;
  std::vector<MicroBatchStats> micro;
};

// One optimizer step over `data` split into micro-batches of `micro_batch` sequences.
StepResult Step(TinyLm& model, const Data& data, std::int64_t first, std::int64_t count,
                std::int64_t micro_batch, AccumulationOptions options = {}) {
  model->zero_grad();
  std::vector<torch::Tensor> ids, labels;
  for (std::int64_t s = first; s < first + count; s += micro_batch) {
    ids.push_back(data.ids.slice(0, s, s + micro_batch));
    labels.push_back(data.labels.slice(0, s, s + micro_batch));
  }
  AccumulationWindow window(labels, options);
  for (std::size_t i = 0; i < ids.size(); ++i) window.Loss(i, model->forward(ids[i])).backward();
  if (options.defer_normalisation()) window.NormaliseGradients(model->parameters());
  StepResult result{0, {}, window.MicroBatches()};
  // Without the process group's gradient averaging (done by the caller), the reference loss is
  // still a collective: take it after backward, as a trainer would.
  result.ref_loss = window.ReferenceLoss();
  for (const auto& p : model->parameters()) result.grads.push_back(p.grad().clone());
  return result;
}

void ExpectSameStep(const StepResult& a, const StepResult& b, const std::string& what) {
  EXPECT_NEAR(a.ref_loss, b.ref_loss, 1e-6 * std::abs(a.ref_loss)) << what;
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (std::size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a.grads[i], b.grads[i], 1e-4, 1e-6))
        << what << ": parameter " << i << " max abs diff "
        << (a.grads[i] - b.grads[i]).abs().max().item<double>();
  }
}

TEST(AccumulationWindow, HowTheBatchIsSplitDoesNotChangeLossOrGradients) {
  Data data = MakeData();
  TinyLm model = FreshModel();
  StepResult mb8_ga1 = Step(model, data, 0, 8, 8);
  StepResult mb1_ga8 = Step(model, data, 0, 8, 1);
  StepResult mb2_ga4 = Step(model, data, 0, 8, 2);
  ExpectSameStep(mb8_ga1, mb1_ga8, "micro_batch 8 / GA 1 vs micro_batch 1 / GA 8");
  ExpectSameStep(mb8_ga1, mb2_ga4, "micro_batch 8 / GA 1 vs micro_batch 2 / GA 4");

  // The same holds under transformers' unshifted count (it is a different, consistent normaliser).
  auto unshifted = AccumulationOptions().label_count(LabelCount::kUnshifted);
  ExpectSameStep(Step(model, data, 0, 8, 8, unshifted), Step(model, data, 0, 8, 1, unshifted),
                 "unshifted count");

  // And the reference loss is the plain token mean of the whole batch.
  auto full = CausalLmCrossEntropy(model->forward(data.ids), data.labels);
  EXPECT_NEAR(mb1_ga8.ref_loss, full.item<double>(), 1e-5);
}

TEST(AccumulationWindow, NormalisingAfterBackwardGivesTheSameLossAndGradients) {
  Data data = MakeData();
  TinyLm model = FreshModel();
  auto deferred = AccumulationOptions().defer_normalisation(true);
  StepResult before = Step(model, data, 0, 8, 8);
  ExpectSameStep(before, Step(model, data, 0, 8, 1, deferred), "mb8/GA1 vs deferred mb1/GA8");
  ExpectSameStep(before, Step(model, data, 0, 8, 2, deferred), "mb8/GA1 vs deferred mb2/GA4");
}

TEST(AccumulationWindow, NormaliseGradientsIsForDeferredWindowsOnceAfterEveryLoss) {
  Data data = MakeData();
  TinyLm model = FreshModel();
  std::vector<torch::Tensor> labels = {data.labels.slice(0, 0, 4), data.labels.slice(0, 4, 8)};
  using ::testing::ThrowsMessage;
  AccumulationWindow normalised(labels);
  normalised.Loss(0, model->forward(data.ids.slice(0, 0, 4)));
  normalised.Loss(1, model->forward(data.ids.slice(0, 4, 8)));
  EXPECT_THAT([&] { normalised.NormaliseGradients(model->parameters()); },
              ThrowsMessage<std::logic_error>(HasSubstr("normalised already")));
  AccumulationWindow deferred(labels, AccumulationOptions().defer_normalisation(true));
  EXPECT_THAT([&] { deferred.global_tokens(); },
              ThrowsMessage<std::logic_error>(HasSubstr("before its collective")));
  deferred.Loss(0, model->forward(data.ids.slice(0, 0, 4))).backward();
  EXPECT_THAT([&] { deferred.NormaliseGradients(model->parameters()); },
              ThrowsMessage<std::logic_error>(HasSubstr("before Loss() or LinearLoss() for every "
                                                        "micro-batch: 1 of 2")));
  deferred.Loss(1, model->forward(data.ids.slice(0, 4, 8))).backward();
  deferred.NormaliseGradients(model->parameters());
  EXPECT_THAT([&] { deferred.NormaliseGradients(model->parameters()); },
              ThrowsMessage<std::logic_error>(HasSubstr("called twice")));
  EXPECT_EQ(deferred.global_tokens(), normalised.global_tokens());
}

TEST(AccumulationWindow, TheDataExposesTheKnownBugs) {
  // If these did not differ, the equality above would prove nothing.
  Data data = MakeData();
  TinyLm model = FreshModel();
  StepResult step = Step(model, data, 0, 8, 1);
  double mean_of_means = 0, sum_of_means = 0;
  std::int64_t tokens = 0;
  for (const MicroBatchStats& mb : step.micro) {
    mean_of_means += mb.loss / 8;
    sum_of_means += mb.loss;
    tokens += mb.tokens;
  }
  EXPECT_GT(std::abs(mean_of_means - step.ref_loss) / step.ref_loss, 0.005)
      << "mean of per-micro-batch means";
  EXPECT_NEAR(sum_of_means / step.ref_loss, 8.0, 0.5)
      << "means summed over GA without dividing: ~ga_steps x";
  EXPECT_EQ(tokens, CountLabelTokens(data.labels, LabelCount::kShifted));
}

TEST(AccumulationWindow, MicroBatchWithNoLabelsContributesNothingAndNoNaN) {
  Data data = MakeData();
  Data padded = data;
  padded.ids = torch::cat({data.ids, torch::zeros({1, kTime}, torch::kLong)});
  padded.labels = torch::cat({data.labels, torch::full({1, kTime}, -100, torch::kLong)});
  TinyLm model = FreshModel();
  StepResult with_empty = Step(model, padded, 0, 9, 1);
  StepResult without = Step(model, data, 0, 8, 1);
  ExpectSameStep(with_empty, without, "an all-ignored micro-batch");
  EXPECT_EQ(with_empty.micro.back().tokens, 0);
  EXPECT_EQ(with_empty.micro.back().loss, 0.0);
}

TEST(AccumulationWindow, WindowWithNoLabelsAtAll) {
  TinyLm model = FreshModel();
  auto ids = torch::zeros({2, kTime}, torch::kLong);
  AccumulationWindow window({torch::full({2, kTime}, -100, torch::kLong)});
  auto loss = window.Loss(0, model->forward(ids));
  loss.backward();
  EXPECT_EQ(loss.item<double>(), 0.0);
  EXPECT_EQ(window.ReferenceLoss(), 0.0);
  for (const auto& p : model->parameters()) EXPECT_TRUE(p.grad().isfinite().all().item<bool>());
}

TEST(AccumulationWindow, MisuseIsRefused) {
  EXPECT_THAT(
      [] { AccumulationWindow window({}); },
      ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("at least one micro-batch")));
  Data data = MakeData();
  TinyLm model = FreshModel();
  AccumulationWindow window({data.labels.slice(0, 0, 4), data.labels.slice(0, 4, 8)});
  EXPECT_THAT([&] { window.ReferenceLoss(); },
              ::testing::ThrowsMessage<std::logic_error>(HasSubstr("0 of 2")));
  EXPECT_THAT(
      [&] { window.Loss(1, model->forward(data.ids.slice(0, 4, 8))); },
      ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("expected index 0, but got 1")));
  EXPECT_THAT([&] { window.Loss(2, model->forward(data.ids.slice(0, 4, 8))); },
              ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("outside a window of 2")));
}

// Real gloo over loopback: two ranks in two threads, each with its own ProcessGroupGloo.
TEST(AccumulationWindow, AnAllReduceFunctionStandsInForAProcessGroup) {
  // The Python package passes torch.distributed's all-reduce as a function. Here it stands for
  // two ranks holding the same data: every sum doubles, so the reference loss is unchanged and
  // each micro-batch loss is its sum x 2 ranks / (2 x local tokens).
  Data data = MakeData();
  TinyLm model = FreshModel();
  StepResult alone = Step(model, data, 0, 8, 2);
  int calls = 0;
  auto doubled = AccumulationOptions()
                     .all_reduce_sum([&calls](torch::Tensor& value) {
                       ++calls;
                       value.mul_(2);
                     })
                     .world_size(2);
  StepResult twice = Step(model, data, 0, 8, 2, doubled);
  EXPECT_EQ(calls, 2) << "one all-reduce for the token count, one for the reference loss";
  ExpectSameStep(alone, twice, "one process vs two identical ranks through all_reduce_sum");
  auto labels = std::vector<torch::Tensor>{data.labels};
  EXPECT_THAT(
      [&] { AccumulationWindow(labels, AccumulationOptions().world_size(0)); },
      ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("world_size must be >= 1")));
}

TEST(AccumulationWindow, TwoGlooRanksMatchTheSingleProcessFullBatch) {
  Data data = MakeData();
  TinyLm reference_model = FreshModel();
  StepResult single = Step(reference_model, data, 0, 8, 8);

  constexpr int kWorld = 2;
  // Models are built here, not in the rank threads (see RunGlooRanks).
  std::vector<TinyLm> models = {FreshModel(), FreshModel()};
  std::vector<StepResult> results(2 * kWorld);
  RunGlooRanks(kWorld, [&](int rank, const c10::intrusive_ptr<c10d::ProcessGroup>& group) {
    TinyLm& model = models[rank];
    // Rank r holds sequences [4r, 4r+4) as GA 2 micro-batches of 2; normalised before backward,
    // then (the same model again: Step resets its gradients) after.
    for (bool defer : {false, true}) {
      StepResult local =
          Step(model, data, rank * 4, 4, 2,
               AccumulationOptions().process_group(group).defer_normalisation(defer));
      // What DDP does: average gradients over ranks.
      for (auto& grad : local.grads) {
        std::vector<torch::Tensor> tensors = {grad};
        group->allreduce(tensors)->wait();
        grad.div_(kWorld);
      }
      results[2 * rank + (defer ? 1 : 0)] = local;
    }
  });
  ASSERT_FALSE(HasFailure());
  for (int rank = 0; rank < kWorld; ++rank) {
    for (int defer = 0; defer < 2; ++defer) {
      ExpectSameStep(
          single, results[2 * rank + defer],
          "rank " + std::to_string(rank) + (defer ? " (deferred)" : "") + " vs single process");
    }
  }
}

}  // namespace
}  // namespace lossguard::collector
