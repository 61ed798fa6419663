#include "lossguard/collector/collector.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "lossguard/analyzers/loss_factor.h"
#include "lossguard/client/spool.h"
#include "lossguard/wire/record_codec.h"

namespace lossguard::collector {

namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Format(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4g", value);
  return buffer;
}

// The "probably" clause of the warning: the server's explanation of the same factor.
std::string Explain(double ratio, const wire::StepRecord& r) {
  const std::optional<analyzers::LossFactor> factor =
      analyzers::MatchLossFactor(ratio, analyzers::LossFactorsOf(r));
  return factor ? "matches " + factor->name + ": " + analyzers::ExplainLossFactor(factor->name, r)
                : analyzers::ExplainLossFactor("unexplained", r);
}
}  // namespace

Collector::Collector(CollectorOptions options) : options_(std::move(options)) {
  if (!options_.warn())
    options_.warn([](std::string_view message) { std::cerr << message << std::endl; });
  wire::StepRecord probe;
  probe.run = options_.run();
  probe.rank = options_.rank();
  probe.world_size = options_.rank() + 1;
  probe.micro_batch_size = options_.micro_batch_size();
  probe.vocab_size = options_.vocab_size();
  // The wire format's own validation, so that a bad option fails here and not at the server.
  auto valid = wire::ParseRecord(wire::ToJson(probe), 0);
  if (!valid) throw std::invalid_argument("lossguard collector: " + valid.error().message);
  if (options_.local_check_clear_steps() < 1) {
    throw std::invalid_argument(
        "lossguard collector: local_check_clear_steps must be >= 1, but got " +
        std::to_string(options_.local_check_clear_steps()));
  }
  if (options_.guard()) {
    guard_.emplace(GuardOptions().policy(*options_.guard()).warn(options_.warn()));
    options_.stream().send_promptly(true);
  }
  if (!options_.stream().server_url().empty()) {
    if (!options_.stream().warn()) options_.stream().warn(options_.warn());
    const bool default_spool = options_.stream().spool_path().empty() && options_.spool_dir() != "";
    if (default_spool) {
      options_.stream().spool_path() =
          client::SpoolPathFor(options_.spool_dir().value_or(client::DefaultSpoolDir()),
                               options_.run(), options_.rank())
              .string();
    }
    try {
      stream_ = std::make_unique<RecordStream>(options_.stream());
    } catch (const std::runtime_error& e) {
      // The default spool is a convenience: if it cannot be had (no writable home, another process
      // holds it), the trainer goes on and streams from memory. A spool the caller named is a
      // requirement, and its failure reaches the caller.
      if (!default_spool) throw;
      options_.warn()("lossguard collector: " + std::string(e.what()) +
                      "; streaming without a spool (records are dropped during a long outage)");
      options_.stream().spool_path().clear();
      stream_ = std::make_unique<RecordStream>(options_.stream());
    }
  }
}

Collector::~Collector() = default;

wire::StepRecord Collector::RecordStep(std::int64_t step, double reported_loss,
                                       AccumulationWindow& window, const GradNormStats& grads,
                                       std::optional<double> lr) {
  wire::StepRecord record;
  record.run = options_.run();
  record.step = step;
  record.rank = options_.rank();
  record.micro_batch_size = options_.micro_batch_size();
  record.loss = reported_loss;
  Describe(window, record);
  record.grad_norm = grads.total_norm;
  record.nonfinite_grads = grads.nonfinite;
  record.vocab_size = options_.vocab_size();
  record.lr = lr;
  record.time = Now();
  AttachGuardAction(record);  // in the record returned too
  Submit(record);
  return record;
}

void Collector::Describe(AccumulationWindow& window, wire::StepRecord& record) {
  const WindowTotals& totals = window.Totals();
  record.world_size = window.world_size();
  record.ga_steps = static_cast<std::int64_t>(window.ga_steps());
  record.ref_loss = totals.ref_loss;
  record.tokens = totals.local_tokens;
  record.micro.clear();
  for (const MicroBatchStats& mb : totals.micro)
    record.micro.push_back({mb.loss, mb.tokens, mb.loss_sum});
}

GuardDecision Collector::GuardStep(std::int64_t step, double reported_loss,
                                   AccumulationWindow& window, const GradNormStats& grads) {
  if (guard_ && window.world_size() > 1 && guard_->policy().Acts()) {
    throw std::logic_error(
        "lossguard guard: a policy that acts (" + guard_->policy().ToString() +
        ") needs every rank to take the same action, which is not supported with world_size " +
        std::to_string(window.world_size()) + " yet; use warn-only policies with several ranks");
  }
  return GuardStep(step, StepSignals{.loss = reported_loss,
                                     .ref_loss = window.Totals().ref_loss,
                                     .grad_norm = grads.total_norm,
                                     .nonfinite_grads = grads.nonfinite});
}

GuardDecision Collector::GuardStep(std::int64_t step, const StepSignals& signals) {
  if (!guard_) throw std::logic_error("lossguard collector: GuardStep without a guard policy");
  if (stream_ && stream_->verdict_generation() != verdict_generation_) {
    verdict_generation_ = stream_->verdict_generation();
    verdicts_ = stream_->Verdicts(options_.run());
  }
  GuardDecision decision = guard_->Check(step, signals, verdicts_ ? &*verdicts_ : nullptr);
  pending_action_ = decision.action;
  pending_action_step_ = step;
  return decision;
}

void Collector::AttachGuardAction(wire::StepRecord& record) {
  // A trainer that records every few steps (a Trainer logging every N) carries it in the next one.
  if (pending_action_ && record.step >= pending_action_step_) {
    record.extra["guard"] = wire::ToJson(*pending_action_);
    pending_action_.reset();
  }
}

bool Collector::Submit(wire::StepRecord record) {
  if (!record.time) record.time = Now();
  AttachGuardAction(record);
  LocalCheck(record);
  return stream_ ? stream_->Submit(std::move(record)) : true;
}

void Collector::LocalCheck(const wire::StepRecord& r) {
  const double grad_norm = r.grad_norm.value_or(0.0);
  const std::int64_t nonfinite_grads = r.nonfinite_grads.value_or(0);
  bool nonfinite = !std::isfinite(r.loss) || !std::isfinite(grad_norm) || nonfinite_grads > 0;
  if (nonfinite && !nonfinite_reported_) {
    options_.warn()("lossguard: step " + std::to_string(r.step) + ": non-finite values (loss " +
                    Format(r.loss) + (r.grad_norm ? ", grad_norm " + Format(grad_norm) : "") +
                    (r.nonfinite_grads
                         ? ", " + std::to_string(nonfinite_grads) + " non-finite gradient elements"
                         : "") +
                    ")");
  }
  nonfinite_reported_ = nonfinite_reported_ || nonfinite;
  if (!r.ref_loss || !std::isfinite(r.loss) || !std::isfinite(*r.ref_loss) || *r.ref_loss <= 0)
    return;
  double ratio = r.loss / *r.ref_loss;
  bool mismatch = std::abs(ratio - 1) > options_.local_check_tolerance();
  const auto now = std::chrono::steady_clock::now();
  if (!mismatch_) {
    if (!mismatch) return;
    mismatch_ = MismatchEpisode{.first_step = r.step, .last_line = now};
    options_.warn()("lossguard: step " + std::to_string(r.step) + ": the reported loss " +
                    Format(r.loss) + " is " + Format(ratio) + "x the token-normalised loss " +
                    Format(*r.ref_loss) + " (ga_steps=" + std::to_string(r.ga_steps) +
                    ", world_size=" + std::to_string(r.world_size) + "); " + Explain(ratio, r));
    return;
  }
  // A ratio that hovers around the tolerance (a mean of micro-batch means) is one episode, not a
  // line each time it crosses.
  MismatchEpisode& episode = *mismatch_;
  ++episode.checked_steps;
  episode.mismatched_steps += mismatch;
  episode.clear_run = mismatch ? 0 : episode.clear_run + 1;
  if (episode.clear_run >= options_.local_check_clear_steps()) {
    mismatch_.reset();
    return;
  }
  if (mismatch && now - episode.last_line >= options_.local_check_summary_interval()) {
    options_.warn()(
        "lossguard: step " + std::to_string(r.step) +
        ": the reported loss is still off the token-normalised loss (" + Format(ratio) + "x now; " +
        std::to_string(episode.mismatched_steps) + " of " + std::to_string(episode.checked_steps) +
        " steps since the last message, since step " + std::to_string(episode.first_step) + ")");
    episode.last_line = now;
    episode.mismatched_steps = 0;
    episode.checked_steps = 0;
  }
}

bool Collector::Flush(std::chrono::milliseconds timeout) {
  return stream_ ? stream_->Flush(timeout) : true;
}

}  // namespace lossguard::collector
