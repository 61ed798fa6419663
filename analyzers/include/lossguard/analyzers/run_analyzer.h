#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "lossguard/analyzers/alert_event.h"
#include "lossguard/analyzers/analyzer_options.h"
#include "lossguard/analyzers/detectors.h"
#include "lossguard/analyzers/episode.h"
#include "lossguard/wire/step_record.h"

namespace lossguard::analyzers {

// All analysis of one run: records in (any order, any rank), alert events out.
//
// Records are judged a step at a time, in step order, once the step's ranks are in: when it holds
// as many ranks as the run reports from (world_size, or fewer once a step has been judged without
// them), or when a step max_wait_steps later has arrived. A rank whose records come after their
// step was judged makes the analyzer wait longer (up to max_wait_cap steps) and expect it again.
// Each rank's record goes through its own detectors; the findings of a kind are combined into one
// episode for the run (rank = nullopt), whose evidence lists the firing ranks. An episode whose
// onset another explains (see AnalyzerOptions::link_steps) is that one's symptom:
// evidence.caused_by = {"kind", "first_step"} names the cause's episode, and its severity is info.
// A record for a step already judged (late or a replacement) is ignored. Memory is bounded:
// detector windows are fixed, pending steps are bounded by max_wait_steps x ranks.
class RunAnalyzer {
 public:
  // `attempt`: which judgement of the run this is (AlertEvent::attempt).
  explicit RunAnalyzer(AnalyzerOptions options = {}, std::int64_t attempt = 0);

  // Feeds one record; returns the events of the steps it let be judged (often none).
  std::vector<AlertEvent> Add(const wire::StepRecord& record);
  // Judges every pending step now, with the ranks it has (end of a stream).
  std::vector<AlertEvent> Flush();

  // The highest judged step; nullopt before the first judgement.
  std::optional<std::int64_t> judged_through() const { return judged_through_; }
  std::int64_t ignored_records() const { return ignored_; }
  std::int64_t attempt() const { return attempt_; }

  // The run's steps from `step` on are judged anew (a trainer resumed from a checkpoint re-sent
  // them): resolves every open episode, marked superseded. The caller then continues with a new
  // RunAnalyzer of attempt() + 1, resumed before `step`.
  std::vector<AlertEvent> Supersede(std::int64_t step);

  // Resume after a restart. `judged` are the run's stored records up to and including
  // judged_through (the last WarmupSteps() steps of them suffice), in step order; `open` the
  // episodes that were open then. Detectors relearn their state from the records without emitting
  // anything; the episodes continue where they were. Call once, before Add().
  void Resume(std::int64_t first_step, std::int64_t judged_through,
              const std::vector<wire::StepRecord>& judged, const std::vector<AlertEvent>& open);

 private:
  struct RankDetectors {
    explicit RankDetectors(const AnalyzerOptions& options);
    NonFiniteDetector nonfinite;
    LossScaleDetector loss_scale;
    TokenWeightingDetector token_weighting;
    GradExplosionDetector grad_explosion;
    LossSpikeDetector loss_spike;
    VanishingGradDetector vanishing_grad;
  };
  // Per kind: the firing ranks and their findings.
  using Findings = PerKind<std::vector<std::pair<std::int64_t, Finding>>>;

  Findings Observe(std::int64_t step, std::vector<wire::StepRecord>& ranks);
  std::vector<AlertEvent> JudgeReady(bool flush);
  // Marks `finding` (of `kind`, at `step`) as a symptom when another episode explains its onset.
  void LinkToCause(Kind kind, std::int64_t step, Finding& finding);
  using Ranks = std::map<std::int64_t, RankDetectors>;
  RankDetectors& DetectorsOf(std::int64_t rank) { return DetectorsAt(ranks_.end(), rank)->second; }
  // The rank's detectors, created if new; `hint` is where they are or would go, if known (a step's
  // records in rank order find each rank next to the previous one, without a search).
  Ranks::iterator DetectorsAt(Ranks::iterator hint, std::int64_t rank);

  AnalyzerOptions options_;
  std::int64_t attempt_ = 0;
  std::optional<std::int64_t> first_step_;
  std::optional<std::int64_t> judged_through_;
  std::int64_t reporting_world_ = 0;   // world_size the expectation below was set from
  std::int64_t expected_ranks_ = 0;    // ranks a step waits for
  std::int64_t wait_steps_ = 0;        // how long a step waits for them (grows with a lagging rank)
  std::set<std::int64_t> ranks_seen_;  // every rank that reported (at most world_size)
  // step -> rank -> record: a rank's record is found in O(log world_size), not by a scan of the
  // step's records (which made ingest slow down with the world size).
  std::map<std::int64_t, std::map<std::int64_t, wire::StepRecord>> pending_;
  Ranks ranks_;
  ConfigChangeDetector config_;
  RankDivergenceDetector rank_divergence_;
  // Per kind: the cause of its current episode, once linked: (kind, first_step).
  PerKind<std::optional<std::pair<Kind, std::int64_t>>> causes_;
  PerKind<std::optional<Episode>> episodes_;  // every kind's, from construction on
  std::int64_t ignored_ = 0;
};

}  // namespace lossguard::analyzers
