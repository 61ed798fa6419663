#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lossguard/collector/accumulation.h"
#include "lossguard/collector/grad_norm.h"
#include "lossguard/collector/guard.h"
#include "lossguard/collector/record_stream.h"
#include "lossguard/wire/step_record.h"

namespace lossguard::collector {

struct CollectorOptions {
  LOSSGUARD_ARG(std::string, run);                    // required: [A-Za-z0-9._:-], 1-128 characters
  LOSSGUARD_ARG(std::int64_t, rank) = 0;              // this process's data-parallel rank
  LOSSGUARD_ARG(std::int64_t, micro_batch_size) = 1;  // sequences per micro-batch on this rank
  LOSSGUARD_ARG(std::optional<std::int64_t>, vocab_size);
  // Where records go; an empty server_url means no streaming (local checks only).
  LOSSGUARD_ARG(RecordStreamOptions, stream);
  // Where the stream spools records while the server is unreachable, when stream.spool_path is
  // empty: <spool_dir>/<run>/rank-<rank>.ndjson. nullopt: client::DefaultSpoolDir()
  // ($LOSSGUARD_SPOOL_DIR, else ~/.local/state/lossguard/spool); "": no spool (memory only).
  // A restarted trainer replays its spool; `lossguard flush DIR` delivers one nobody restarts.
  LOSSGUARD_ARG(std::optional<std::string>, spool_dir);
  // Compare the reported loss with the normalised one and warn in the trainer's log when they
  // disagree by more than this fraction: one line when a mismatch starts (an episode, as the
  // server's alerts: it ends after local_check_clear_steps steps without one), then while it
  // lasts a summary at most every local_check_summary_interval.
  LOSSGUARD_ARG(double, local_check_tolerance) = 0.01;
  LOSSGUARD_ARG(std::int64_t, local_check_clear_steps) = 20;
  LOSSGUARD_ARG(std::chrono::seconds, local_check_summary_interval) = std::chrono::minutes(10);
  LOSSGUARD_ARG(std::function<void(std::string_view)>, warn);  // default: stderr
  // Act on verdicts (Guard, GuardPolicy): set, the trainer calls GuardStep before each
  // optimizer.step(), and the stream sends records promptly so that the server's verdicts come
  // back within a step or two. nullopt: watch only.
  LOSSGUARD_ARG(std::optional<GuardPolicy>, guard);
};

// What a training loop calls once per optimizer step. Builds the wire-format-v1 record (the loss as
// the trainer reports it next to ref_loss, the correctly normalised loss from the
// AccumulationWindow; per-micro-batch losses and token counts; gradient statistics; ga_steps,
// micro_batch_size, rank, world_size, vocab_size, lr, time) and hands it to a RecordStream.
// The trainer's loss is taken as given, so that a trainer with its own, possibly wrong, loss can
// be audited.
//
// Not thread-safe: call it from the training loop.
class Collector {
 public:
  // Throws std::invalid_argument for a bad run name or options (before training starts).
  explicit Collector(CollectorOptions options);
  ~Collector();

  // With a process group in the window, a collective (it all-reduces the window's loss sum):
  // every rank calls it for every step. Waits for the device once, in window.Totals() (unless the
  // trainer read them already this step); call it after optimizer.step(). Returns the record it
  // handed over.
  wire::StepRecord RecordStep(std::int64_t step, double reported_loss, AccumulationWindow& window,
                              const GradNormStats& grads, std::optional<double> lr = std::nullopt);

  // For trainers that build their own records (the Python package does): the same local check as
  // RecordStep, then the hand-off; a record without a time gets the current one. The record should
  // be valid wire format v1 (wire::ParseRecord says why not); the server refuses one that is not,
  // and the stream counts it as rejected. Returns false when the stream's queue was full (the
  // record is counted as dropped).
  bool Submit(wire::StepRecord record);

  // Fills what `window` knows into `record`: world_size, ga_steps, ref_loss, tokens and the
  // per-micro-batch losses, all from window.Totals() (one collective with ranks, one read).
  static void Describe(AccumulationWindow& window, wire::StepRecord& record);

  // With a guard (CollectorOptions::guard), before optimizer.step(): judges the step from the
  // trainer's loss, the window's reference loss and the gradient statistics, and the run's latest
  // server verdicts, and says what to do (GuardDecision). The action taken goes into this step's
  // record (RecordStep / Submit of the same step, or of the first step recorded after it). Waits
  // for the device once (the window's totals, shared with RecordStep). Throws std::logic_error
  // without a guard, and for a window with several ranks when the policy does more than warn: ranks
  // must act alike, and agreeing on an action is not built yet.
  GuardDecision GuardStep(std::int64_t step, double reported_loss, AccumulationWindow& window,
                          const GradNormStats& grads);
  // The same from signals the trainer computed itself (the Python package).
  GuardDecision GuardStep(std::int64_t step, const StepSignals& signals);
  // nullptr without a guard. Tell it about checkpoints (Guard::Checkpointed) for rollbacks.
  collector::Guard* guard() { return guard_ ? &*guard_ : nullptr; }

  // Waits for the stream to deliver everything so far; true when there is no stream.
  bool Flush(std::chrono::milliseconds timeout);
  // nullptr when not streaming.
  const RecordStream* stream() const { return stream_.get(); }

 private:
  void LocalCheck(const wire::StepRecord& record);
  // Puts the guard's pending action into the record (of its step, or the first one after it).
  void AttachGuardAction(wire::StepRecord& record);

  CollectorOptions options_;
  std::unique_ptr<RecordStream> stream_;
  // The local check's open mismatch episode, if any.
  struct MismatchEpisode {
    std::int64_t first_step = 0;
    std::int64_t mismatched_steps = 0;  // since the last line about it
    std::int64_t checked_steps = 0;     // since the last line about it
    std::int64_t clear_run = 0;         // consecutive steps without a mismatch
    std::chrono::steady_clock::time_point last_line;
  };
  std::optional<MismatchEpisode> mismatch_;
  bool nonfinite_reported_ = false;
  std::optional<collector::Guard> guard_;
  // The guard's action at pending_action_step_, for that step's record.
  std::optional<wire::GuardAction> pending_action_;
  std::int64_t pending_action_step_ = -1;
  std::optional<client::RunVerdicts> verdicts_;  // the latest the stream had
  std::uint64_t verdict_generation_ = 0;
};

}  // namespace lossguard::collector
