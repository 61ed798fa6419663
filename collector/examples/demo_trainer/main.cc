// lossguard demo trainer: a small GPT-style causal LM trained on CPU on a generated corpus, with
// the collector attached. It reproduces the public loss-normalisation bugs on demand, so that what
// lossguard finds can be seen on real training runs.
//
//   demo_trainer --server http://127.0.0.1:8080 --run ok-mb8 --micro-batch-size 8 --ga-steps 1
//   demo_trainer --server ... --run ok-mb1 --micro-batch-size 1 --ga-steps 8   # same losses
//   demo_trainer --server ... --run bug --micro-batch-size 1 --ga-steps 8 --loss sum-no-ga-div
//
// With the same --seed, runs that differ only in how the same effective batch is split (micro-batch
// size x GA steps x world size) see the same sequences in the same order and start from the same
// weights; there is no dropout. With --loss correct their per-step loss and grad_norm coincide.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "batches.h"
#include "checkpoints.h"
#include "config.h"
#include "launcher.h"
#include "loss_patterns.h"
#include "lossguard/collector/allocation_peak.h"
#include "lossguard/collector/collector.h"
#include "lossguard/wire/record_codec.h"
#include "model.h"

namespace lossguard::demo {
namespace {

using namespace lossguard::collector;

void SetLearningRate(torch::optim::AdamW& optimizer, double lr) {
  for (auto& group_options : optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(group_options.options()).lr(lr);
}

// The guard said stop (the step's record is handed over): the state is saved, the collector is
// flushed, and the trainer exits with kGuardStopExitCode.
int StopForGuard(const Config& c, std::int64_t step, Gpt& model, torch::optim::AdamW& optimizer,
                 Collector& collector) {
  std::string saved = "no checkpoint saved (no --checkpoint-dir)";
  if (!c.checkpoint_dir.empty()) {
    const std::string base = c.checkpoint_dir + "/stopped-at-step-" + std::to_string(step);
    torch::save(model, base + ".model.pt");
    torch::save(optimizer, base + ".optimizer.pt");
    saved = "the state before this step's update is in " + base + ".{model,optimizer}.pt";
  }
  const bool flushed = collector.Flush(std::chrono::seconds(c.flush_timeout_s));
  std::fprintf(stderr,
               "[%s] stopped by lossguard's guard at step %lld (see the line above); %s; %s\n",
               c.run.c_str(), static_cast<long long>(step), saved.c_str(),
               flushed ? "every record reached the server" : "records wait in the spool");
  return kGuardStopExitCode;
}

int Train(const Config& c) {
  torch::manual_seed(c.seed);
  torch::set_num_threads(1);
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  if (c.world_size > 1) {
    c10::intrusive_ptr<c10d::Store> store;
    if (c.rank == 0) {
      c10d::TCPStoreOptions options;
      options.port = 0;
      options.isServer = true;
      options.numWorkers = static_cast<std::size_t>(c.world_size);
      options.waitWorkers = false;
      auto server = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
      std::ofstream(c.store_file + ".tmp") << server->getPort() << "\n";
      std::rename((c.store_file + ".tmp").c_str(), c.store_file.c_str());
      store = server;
    } else {
      int port = 0;
      for (int tries = 0; tries < 3000 && !(std::ifstream(c.store_file) >> port); ++tries) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (port == 0)
        throw std::runtime_error("rank " + std::to_string(c.rank) +
                                 ": rank 0 never published its port");
      c10d::TCPStoreOptions options;
      options.port = static_cast<std::uint16_t>(port);
      options.numWorkers = static_cast<std::size_t>(c.world_size);
      store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
    }
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(c.rank),
                                                        static_cast<int>(c.world_size), options);
  }

  const std::string corpus = Corpus(200'000);
  Gpt model;
  if (!c.init_model.empty()) torch::load(model, c.init_model);  // fine-tuning a trained model
  torch::optim::AdamW optimizer(model->parameters(),
                                torch::optim::AdamWOptions(c.lr).weight_decay(0.0));

  CollectorOptions options = CollectorOptions()
                                 .run(c.run)
                                 .rank(c.rank)
                                 .micro_batch_size(c.micro_batch_size)
                                 .vocab_size(kVocab);
  options.stream().server_url(c.server_url);
  options.stream().spool_path(c.spool);
  if (c.spool_dir) options.spool_dir(*c.spool_dir == "none" ? "" : *c.spool_dir);
  options.stream().drain_timeout(std::chrono::seconds(c.flush_timeout_s));
  if (!c.guard.empty()) options.guard(GuardPolicy::Parse(c.guard));
  std::optional<Collector> collector;
  if (!c.no_collector) collector.emplace(options);
  Checkpoints checkpoints(c.checkpoint_dir, c.keep_checkpoints);
  if (collector && collector->guard()) checkpoints.Save(-1, model, optimizer, *collector->guard());
  std::int64_t guard_skips = 0, guard_rollbacks = 0;
  std::ofstream out;
  if (!c.out.empty()) out.open(c.out + (c.world_size > 1 ? ".rank" + std::to_string(c.rank) : ""));

  // Peak bytes allocated by the training steps (activations, the loss, gradients, optimizer
  // state), through LibTorch's CPU allocator.
  std::optional<AllocationPeak> memory;
  if (c.report_memory) memory.emplace();
  auto started = std::chrono::steady_clock::now();
  for (std::int64_t step = 0; step < c.steps; ++step) {
    Config now = c;  // the configuration in force at this step
    if (c.ga_change_at >= 0 && step >= c.ga_change_at) now.ga_steps = c.ga_change_to;
    const std::int64_t per_rank = now.micro_batch_size * now.ga_steps;
    double warmup = step < c.warmup_steps
                        ? static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps)
                        : 1.0;
    double decay = 1.0;
    if (c.cosine && step >= c.warmup_steps) {
      const double progress =
          static_cast<double>(step - c.warmup_steps) /
          static_cast<double>(std::max<std::int64_t>(1, c.steps - c.warmup_steps));
      decay = 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress));
    }
    const bool spiking =
        c.lr_spike_at >= 0 && step >= c.lr_spike_at && step < c.lr_spike_at + c.lr_spike_steps;
    double lr = c.lr * warmup * decay * (spiking ? c.lr_spike_factor : 1.0) *
                (collector && collector->guard() ? collector->guard()->lr_scale() : 1.0);
    SetLearningRate(optimizer, lr);
    optimizer.zero_grad();
    std::vector<Batch> micro;
    std::vector<torch::Tensor> labels;
    for (std::int64_t i = 0; i < now.ga_steps; ++i) {
      micro.push_back(Sequences(corpus, c.seed, step, c.rank * per_rank + i * c.micro_batch_size,
                                c.micro_batch_size));
      if (c.bad_data_at >= 0 && step >= c.bad_data_at && step < c.bad_data_at + 3) {
        // A corrupt shard: uniformly random tokens where the text was (padding kept).
        Batch& b = micro.back();
        torch::Tensor noise = torch::randint(1, kVocab, b.ids.sizes(), torch::kLong);
        torch::Tensor text = b.labels != -100;
        b.ids = torch::where(text, noise, b.ids);
        b.labels = torch::where(text, noise, b.labels);
      }
      labels.push_back(micro.back().labels);
    }
    AccumulationWindow window(labels, AccumulationOptions().process_group(group));
    torch::Tensor reported_sum = torch::zeros({});
    for (std::size_t i = 0; i < micro.size(); ++i) {
      Output output{model->Hidden(micro[i].ids), model->head->weight, model->head->bias,
                    c.loss_impl == "fused"};
      MicroLoss loss = LossFor(now, window, i, output, micro[i].labels);
      if (step == c.nan_at) loss.backward = loss.backward * std::nan("");
      // From this step on no gradient reaches the model (a kernel returning zero gradients).
      if (c.detach_loss_at >= 0 && step >= c.detach_loss_at)
        loss.backward = loss.backward.detach().requires_grad_(true);
      loss.backward.backward();
      reported_sum = reported_sum + loss.reported;
    }
    if (group) {  // what DDP does: average gradients over ranks
      const bool skips = c.rank == c.skip_all_reduce_rank && step >= c.skip_all_reduce_from;
      for (auto& p : model->parameters()) {
        std::vector<torch::Tensor> grads = {skips ? p.grad().clone() : p.grad()};
        group->allreduce(grads)->wait();
        if (!skips) p.mutable_grad().div_(static_cast<double>(c.world_size));
      }
    }
    // A correct trainer reports the step's token-normalised loss over all ranks: the window's
    // totals (one collective and one read, shared with the record). Any other reads its own sum.
    // Asked for after optimizer.step(), when the device has the step's work queued.
    auto reported_loss = [&] {
      if (step == c.nan_at) return std::nan("");
      return c.loss == "correct" ? window.ReferenceLoss() : reported_sum.item<double>();
    };
    if (!collector) {
      double norm = ClipGradNorm(model->parameters(), c.clip).item<double>();
      optimizer.step();
      double reported = reported_loss();
      if (!c.quiet && c.rank == 0 && step % 10 == 0) {
        std::printf("[%s] step %4lld/%lld  loss %8.4f  grad_norm %8.4f (no collector)\n",
                    c.run.c_str(), static_cast<long long>(step), static_cast<long long>(c.steps),
                    reported, norm);
      }
      continue;
    }
    GradNormStats grads = ComputeGradNorm(model->parameters());
    const double reported = reported_loss();
    if (collector->guard()) {
      // Judged before optimizer.step(): a step the guard refuses never reaches the weights.
      GuardDecision decision = collector->GuardStep(step, reported, window, grads);
      if (decision.lr_factor != 1) {
        lr *= decision.lr_factor;
        SetLearningRate(optimizer, lr);
      }
      if (decision.stop()) {  // this step's record (with the action) goes out first
        lossguard::wire::StepRecord record =
            collector->RecordStep(step, reported, window, grads, lr);
        if (out.is_open()) out << lossguard::wire::CanonicalJson(record) << std::endl;
        return StopForGuard(c, step, model, optimizer, *collector);
      }
      if (decision.rollback()) {
        checkpoints.Restore(*decision.rollback_to, model, optimizer);
        ++guard_rollbacks;
      }
      if (!decision.step_optimizer()) {
        optimizer.zero_grad();
        if (!decision.rollback()) ++guard_skips;
      }
      if (decision.step_optimizer()) {
        ClipGradNorm(model->parameters(), c.clip);
        optimizer.step();
      }
    } else {
      ClipGradNorm(model->parameters(), c.clip);
      optimizer.step();
    }
    lossguard::wire::StepRecord record = collector->RecordStep(step, reported, window, grads, lr);
    if (collector->guard() && (step + 1) % c.checkpoint_every == 0)
      checkpoints.Save(step, model, optimizer, *collector->guard());
    if (out.is_open()) out << lossguard::wire::CanonicalJson(record) << "\n";
    if (!c.quiet && c.rank == 0 && (step % 10 == 0 || step + 1 == c.steps)) {
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::printf(
          "[%s] step %4lld/%lld  loss %8.4f  ref_loss %7.4f  grad_norm %8.4f  %5.1f steps/s\n",
          c.run.c_str(), static_cast<long long>(step), static_cast<long long>(c.steps), record.loss,
          *record.ref_loss, *record.grad_norm, static_cast<double>(step + 1) / seconds);
      std::fflush(stdout);
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (memory && c.rank == 0) {
    std::printf("[%s] peak allocated during training (%s loss): %.2f MB\n", c.run.c_str(),
                c.loss_impl.c_str(), static_cast<double>(memory->peak_bytes()) / 1e6);
  }
  if (c.rank == 0 && !c.save_model.empty()) torch::save(model, c.save_model);
  if (c.rank == 0) {
    std::printf("[%s] trained %lld steps in %.2f s: %.3f ms/step\n", c.run.c_str(),
                static_cast<long long>(c.steps), seconds,
                1000 * seconds / static_cast<double>(c.steps));
    if (collector && collector->guard()) {
      std::printf("[%s] guard: %lld steps skipped, %lld rollbacks, learning rate x%g\n",
                  c.run.c_str(), static_cast<long long>(guard_skips),
                  static_cast<long long>(guard_rollbacks), collector->guard()->lr_scale());
    }
  }
  if (collector && !c.server_url.empty() &&
      !collector->Flush(std::chrono::seconds(c.flush_timeout_s))) {
    // With a spool nothing is lost: the records wait there for the next start or `lossguard flush`.
    const std::string& spool = collector->stream()->spool_path();
    std::fprintf(stderr, "[%s] rank %lld: not every record reached the server; %s\n", c.run.c_str(),
                 static_cast<long long>(c.rank),
                 spool.empty()
                     ? "they are lost (no spool)"
                     : ("the rest waits in " + spool + " (lossguard flush delivers it)").c_str());
    return spool.empty() ? 1 : 0;
  }
  return 0;
}

}  // namespace
}  // namespace lossguard::demo

int main(int argc, char** argv) {
  CLI::App app{"lossguard demo trainer: a small GPT on CPU with the collector attached"};
  lossguard::demo::Config c;
  std::optional<std::int64_t> rank;
  app.add_option("--server", c.server_url, "lossguard server URL (none: no streaming)");
  app.add_option("--run", c.run, "run name")->capture_default_str();
  app.add_option("--seed", c.seed, "data and weights seed")->capture_default_str();
  app.add_option("--micro-batch-size", c.micro_batch_size, "sequences per micro-batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--ga-steps", c.ga_steps, "gradient-accumulation steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--steps", c.steps, "optimizer steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lr", c.lr, "AdamW learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--world-size", c.world_size, "data-parallel processes (gloo over loopback)")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--loss", c.loss, "how the trainer computes its loss")
      ->check(CLI::IsMember({"correct", "sum-no-ga-div", "mean-of-means", "per-sequence"}))
      ->capture_default_str();
  app.add_option("--loss-impl", c.loss_impl,
                 "fused: LinearCrossEntropy from the hidden states; unfused: the head's logits, "
                 "then CausalLmCrossEntropy")
      ->check(CLI::IsMember({"fused", "unfused"}))
      ->capture_default_str();
  app.add_flag("--report-memory", c.report_memory,
               "print the peak bytes LibTorch's CPU allocator handed out during training");
  app.add_option("--lr-spike-at", c.lr_spike_at, "multiply the learning rate at this step");
  app.add_option("--lr-spike-factor", c.lr_spike_factor, "by this factor")->capture_default_str();
  app.add_option("--lr-spike-steps", c.lr_spike_steps, "for this many steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--guard", c.guard,
                 "act on verdicts: KIND[:SEVERITY]=warn|lower_lr[:F]|skip_step|rollback|stop,... "
                 "(e.g. loss_scale_mismatch=stop,nonfinite=skip_step,grad_explosion=rollback)");
  app.add_option("--checkpoint-dir", c.checkpoint_dir,
                 "with --guard: checkpoints for rollback, and the state saved at a stop");
  app.add_option("--checkpoint-every", c.checkpoint_every, "steps between checkpoints")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--keep-checkpoints", c.keep_checkpoints, "checkpoints kept")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--nan-at", c.nan_at, "make the loss NaN at this step");
  app.add_option("--detach-loss-at", c.detach_loss_at,
                 "from this step's backward no gradient reaches the model");
  app.add_option("--bad-data-at", c.bad_data_at,
                 "train on random tokens for three steps from here (a corrupt data shard)");
  app.add_option("--warmup-steps", c.warmup_steps, "linear learning-rate warm-up over these steps")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ga-change-at", c.ga_change_at, "from this step on, use --ga-change-to");
  app.add_option("--ga-change-to", c.ga_change_to, "gradient-accumulation steps after the change")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--cosine", c.cosine, "cosine learning-rate decay to lr/10 after the warm-up");
  app.add_option("--init-model", c.init_model,
                 "start from these weights (a --save-model file): fine-tuning")
      ->check(CLI::ExistingFile);
  app.add_option("--save-model", c.save_model, "at the end, save the weights here (rank 0)");
  app.add_option("--skip-all-reduce-rank", c.skip_all_reduce_rank,
                 "a rank fault: this rank keeps its local gradients instead of the all-reduced "
                 "ones...");
  app.add_option("--skip-all-reduce-from", c.skip_all_reduce_from, "...from this step on")
      ->capture_default_str();
  app.add_option("--clip", c.clip, "gradient clipping max norm")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--out", c.out,
                 "also write every record as NDJSON to this file (.rankN with --world-size > 1)");
  app.add_option("--spool", c.spool, "collector spool file for server outages");
  app.add_option("--spool-dir", c.spool_dir,
                 "directory of per-run spools when --spool is not given (default: "
                 "$LOSSGUARD_SPOOL_DIR, else ~/.local/state/lossguard/spool; none: no spool)");
  app.add_flag("--quiet", c.quiet, "no progress lines");
  app.add_flag("--no-collector", c.no_collector, "train without the collector (overhead baseline)");
  app.add_option("--flush-timeout-s", c.flush_timeout_s, "at the end, wait this long for delivery")
      ->capture_default_str();
  app.add_option("--rank", rank, "internal: this process's rank")->group("");
  app.add_option("--store-file", c.store_file, "internal: rendezvous file")->group("");
  CLI11_PARSE(app, argc, argv);
  try {
    if (c.world_size > 1 && !rank) return lossguard::demo::LaunchRanks(argc, argv, c.world_size);
    c.rank = rank.value_or(0);
    if (!c.guard.empty()) {
      try {
        lossguard::collector::GuardPolicy::Parse(c.guard);
      } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "demo_trainer: --guard: %s\n", e.what());
        return 2;
      }
    }
    return lossguard::demo::Train(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "demo_trainer: %s\n", e.what());
    return 1;
  }
}
