// What the collector's per-step work waits for: collectives and reads from the device, counted on
// a real two-rank gloo step. (No GPU here: on the CPU nothing waits, but the same calls that would
// synchronise with a GPU are the ones counted.)
#include <ATen/record_function.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>

#include "collector/gloo_ranks.h"
#include "collector/tiny_lm.h"
#include "lossguard/collector/collector.h"

namespace lossguard::collector {
namespace {

// Per thread (each rank runs in its own): reads the collector makes and item() calls, only while
// `counting` (inside lossguard's calls, not the test's own).
struct Counts {
  int reads = 0;       // lossguard::read_to_host: the collector's one way to the host
  int item_calls = 0;  // aten::_local_scalar_dense (what item() runs): a read anywhere else
  int collectives = 0;
};
thread_local Counts counts;
thread_local bool counting = false;

std::unique_ptr<at::ObserverContext> Observe(const at::RecordFunction& fn) {
  if (!counting) return nullptr;
  const char* name = fn.name();
  if (std::strcmp(name, "lossguard::read_to_host") == 0) ++counts.reads;
  if (std::strcmp(name, "aten::_local_scalar_dense") == 0) ++counts.item_calls;
  return nullptr;
}

// Runs `call` with counting on.
template <typename Call>
auto Counted(Call&& call) {
  counting = true;
  struct Off {
    ~Off() { counting = false; }
  } off;
  return call();
}

// One optimizer step on two gloo ranks, counted: normalised before backward (defer false) or
// after (defer true).
void CountOneStep(bool defer, int expected_collectives) {
  constexpr int kWorld = 2, kSteps = 3;
  Data data = MakeData();
  std::vector<TinyLm> models = {FreshModel(), FreshModel()};
  std::vector<std::vector<Counts>> per_step(kWorld);
  std::vector<double> ref_losses(kWorld);

  RunGlooRanks(kWorld, [&](int rank, const c10::intrusive_ptr<c10d::ProcessGroup>& group) {
    {
      at::CallbackHandle handle =
          at::addThreadLocalCallback(at::RecordFunctionCallback(&Observe).needsInputs(false));
      // The process group through a counting all-reduce function: every collective the window
      // makes passes here.
      auto options = AccumulationOptions()
                         .all_reduce_sum([&group](torch::Tensor& value) {
                           ++counts.collectives;
                           std::vector<torch::Tensor> tensors = {value};
                           group->allreduce(tensors)->wait();
                         })
                         .world_size(kWorld)
                         .defer_normalisation(defer);
      Collector collector(CollectorOptions().run("sync-count").rank(rank).micro_batch_size(2));
      TinyLm& model = models[rank];
      torch::optim::SGD optimizer(model->parameters(), 0.1);
      for (int step = 0; step < kSteps; ++step) {
        counts = {};
        optimizer.zero_grad();
        std::vector<torch::Tensor> labels = {data.labels.slice(0, rank * 4, rank * 4 + 2),
                                             data.labels.slice(0, rank * 4 + 2, rank * 4 + 4)};
        auto window =
            Counted([&] { return std::make_unique<AccumulationWindow>(labels, options); });
        for (std::size_t i = 0; i < labels.size(); ++i) {
          torch::Tensor ids = data.ids.slice(0, rank * 4 + 2 * i, rank * 4 + 2 * i + 2);
          torch::Tensor hidden = model->embed(ids);
          Counted([&] {
            return window->LinearLoss(i, hidden, model->head->weight, model->head->bias);
          }).backward();
        }
        for (auto& p : model->parameters()) {  // DDP's gradient averaging (not the collector's)
          std::vector<torch::Tensor> grads = {p.grad()};
          group->allreduce(grads)->wait();
          p.mutable_grad().div_(kWorld);
        }
        if (defer) Counted([&] { return (window->NormaliseGradients(model->parameters()), 0); });
        GradNormStats grads = Counted([&] { return ComputeGradNorm(model->parameters()); });
        Counted([&] { return ClipGradNorm(model->parameters(), 1.0); });
        optimizer.step();
        wire::StepRecord record =
            Counted([&] { return collector.RecordStep(step, 1.0, *window, grads, 0.1); });
        ref_losses[rank] = *record.ref_loss;
        per_step[rank].push_back(counts);
      }
      at::removeCallback(handle);
    }
  });
  ASSERT_FALSE(::testing::Test::HasFailure());
  for (int rank = 0; rank < kWorld; ++rank) {
    ASSERT_EQ(per_step[rank].size(), static_cast<std::size_t>(kSteps));
    for (int step = 0; step < kSteps; ++step) {
      const Counts& c = per_step[rank][step];
      const std::string where = "rank " + std::to_string(rank) + " step " + std::to_string(step);
      EXPECT_EQ(c.collectives, expected_collectives)
          << where
          << (defer ? ": the count and the loss sum together"
                    : ": the token count, then the record's loss sum");
      EXPECT_EQ(c.reads, 2) << where << ": the window's totals and the gradient statistics";
      // The one other read: the label range check of each micro-batch's loss, made only for labels
      // on the CPU (on a device it is an asynchronous device-side assertion).
      EXPECT_EQ(c.item_calls, 2) << where << ": the CPU label check of 2 micro-batches, no more";
    }
  }
  EXPECT_EQ(ref_losses[0], ref_losses[1]) << "both ranks report the global loss";
  EXPECT_GT(ref_losses[0], 0);
}

TEST(HostSynchronisation, OneStepMakesTwoCollectivesAndTwoReadsAndNoOtherItemCalls) {
  CountOneStep(/*defer=*/false, /*expected_collectives=*/2);
}

TEST(HostSynchronisation, NormalisingAfterBackwardMakesOneCollective) {
  CountOneStep(/*defer=*/true, /*expected_collectives=*/1);
}

TEST(HostSynchronisation, ReadingTheTotalsTwiceMakesNoSecondCollective) {
  Data data = MakeData();
  TinyLm model = FreshModel();
  int collectives = 0;
  auto options = AccumulationOptions()
                     .all_reduce_sum([&collectives](torch::Tensor&) { ++collectives; })
                     .world_size(1);
  AccumulationWindow window({data.labels}, options);
  window.Loss(0, model->forward(data.ids)).backward();
  const double first = window.ReferenceLoss();
  Collector collector(CollectorOptions().run("twice"));
  wire::StepRecord record = collector.RecordStep(0, first, window, GradNormStats{});
  EXPECT_EQ(collectives, 2) << "the count and one loss sum, however often the totals are read";
  EXPECT_EQ(*record.ref_loss, first);
}

}  // namespace
}  // namespace lossguard::collector
