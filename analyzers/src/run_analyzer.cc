#include "lossguard/analyzers/run_analyzer.h"

#include <algorithm>
#include <cmath>

#include "lossguard/wire/json_numbers.h"

namespace lossguard::analyzers {

namespace {
// Evidence in the wire format's spelling: JSON has no NaN/Infinity (nlohmann would write null).
void SpellNonFinite(nlohmann::json& value) {
  if (value.is_number_float() && !std::isfinite(value.get<double>())) {
    value = wire::NumberToJson(value.get<double>());
  } else if (value.is_structured()) {
    for (auto& child : value) SpellNonFinite(child);
  }
}

// Causes before their symptoms: a symptom links to an episode judged before it at the same step.
constexpr std::array<Kind, kKindCount> kJudgeOrder = {
    Kind::kConfigChange,       Kind::kRankDivergence, Kind::kLossScaleMismatch,
    Kind::kTokenWeightingBias, Kind::kVanishingGrad,  Kind::kGradExplosion,
    Kind::kLossSpike,          Kind::kNonFinite};

// A kind of episode that can explain another's onset. A structural cause (a configuration change, a
// loss-scale factor, ranks that diverged) explains symptoms that start within link_steps of its own
// onset; an explosion explains those that start while it fires or within link_steps after.
struct CauseRule {
  Kind symptom, cause;
  bool while_firing;
};
constexpr std::array<CauseRule, 8> kCauseRules = {{
    {Kind::kGradExplosion, Kind::kConfigChange, false},
    {Kind::kGradExplosion, Kind::kLossScaleMismatch, false},
    {Kind::kGradExplosion, Kind::kRankDivergence, false},
    {Kind::kLossSpike, Kind::kConfigChange, false},
    {Kind::kLossSpike, Kind::kLossScaleMismatch, false},
    {Kind::kLossSpike, Kind::kGradExplosion, true},
    {Kind::kNonFinite, Kind::kGradExplosion, true},
    {Kind::kNonFinite, Kind::kLossSpike, true},
}};

// What a step's message says when several ranks fired.
std::string RanksSuffix(const nlohmann::json& ranks) { return " [ranks " + ranks.dump() + "]"; }

// The message a detector reported for an episode: without the ranks that JudgeReady added.
std::string DetectorMessage(const AlertEvent& episode) {
  std::string message = episode.message;
  const std::string suffix = RanksSuffix(episode.evidence.value("ranks", nlohmann::json::array()));
  if (message.size() > suffix.size() &&
      message.compare(message.size() - suffix.size(), suffix.size(), suffix) == 0) {
    message.resize(message.size() - suffix.size());
  }
  return message;
}

nlohmann::json CauseToJson(const std::pair<Kind, std::int64_t>& cause) {
  return {{"kind", KindName(cause.first)}, {"first_step", cause.second}};
}
}  // namespace

std::int64_t AnalyzerOptions::WarmupSteps() const {
  std::size_t longest = std::max({grad_explosion.window, loss_spike.window, vanishing_grad.window,
                                  rank_divergence.imbalance_window, token_weighting.window,
                                  loss_scale.level_shift_steps * 2});
  // Twice the longest window: the token-weighting window counts informative steps only.
  return 2 * static_cast<std::int64_t>(longest);
}

RunAnalyzer::RankDetectors::RankDetectors(const AnalyzerOptions& o)
    : loss_scale(o.loss_scale),
      token_weighting(o.token_weighting),
      grad_explosion(o.grad_explosion),
      loss_spike(o.loss_spike),
      vanishing_grad(o.vanishing_grad) {}

RunAnalyzer::RunAnalyzer(AnalyzerOptions options, std::int64_t attempt)
    : options_(options),
      attempt_(attempt),
      wait_steps_(options.max_wait_steps),
      rank_divergence_(options.rank_divergence) {
  for (Kind kind : kAllKinds)
    episodes_[kind].emplace(kind, std::nullopt, options_.resolve_after, attempt);
}

RunAnalyzer::Ranks::iterator RunAnalyzer::DetectorsAt(Ranks::iterator hint, std::int64_t rank) {
  if (hint != ranks_.end() && hint->first == rank) return hint;
  const std::size_t before = ranks_.size();
  auto it = ranks_.try_emplace(hint, rank, options_);
  // A rank seen for the first time late (or after a restart) belongs to a run that started
  // earlier: its "first steps" are over.
  if (ranks_.size() != before && first_step_) it->second.loss_scale.SetFirstStep(*first_step_);
  return it;
}

std::vector<AlertEvent> RunAnalyzer::Add(const wire::StepRecord& record) {
  if (static_cast<std::int64_t>(ranks_seen_.size()) < std::max<std::int64_t>(1, record.world_size))
    ranks_seen_.insert(record.rank);
  if (judged_through_ && record.step <= *judged_through_) {
    ++ignored_;  // the step has been judged; its alerts are history
    // Its rank lags more than the wait: wait as long as it lags from now on, and expect it again.
    wait_steps_ = std::min(
        options_.max_wait_cap,
        std::max(wait_steps_, *judged_through_ - record.step + 1 + options_.max_wait_steps));
    expected_ranks_ = std::min(
        reporting_world_, std::max(expected_ranks_, static_cast<std::int64_t>(ranks_seen_.size())));
    return {};
  }
  if (!first_step_ || record.step < *first_step_) first_step_ = record.step;
  if (record.world_size != reporting_world_) {
    reporting_world_ = record.world_size;
    expected_ranks_ = record.world_size;
  }
  // A replacement before judgement: the newer record counts.
  // Ranks mostly arrive in order: the end is the place to look first.
  auto& step_records = pending_[record.step];
  step_records.insert_or_assign(step_records.end(), record.rank, record);
  return JudgeReady(/*flush=*/false);
}

std::vector<AlertEvent> RunAnalyzer::Flush() { return JudgeReady(/*flush=*/true); }

std::vector<AlertEvent> RunAnalyzer::Supersede(std::int64_t step) {
  std::vector<AlertEvent> events;
  for (Kind kind : kAllKinds) {
    if (auto event = episodes_[kind]->Supersede(step)) events.push_back(std::move(*event));
  }
  return events;
}

std::vector<AlertEvent> RunAnalyzer::JudgeReady(bool flush) {
  std::vector<AlertEvent> events;
  while (!pending_.empty()) {
    auto oldest = pending_.begin();
    const std::int64_t step = oldest->first;
    const auto present = static_cast<std::int64_t>(oldest->second.size());
    const bool complete = present >= expected_ranks_;
    const bool waited_enough = pending_.rbegin()->first >= step + wait_steps_;
    if (!complete && !waited_enough && !flush) break;
    // Judged without some ranks: the run reports from fewer ranks than world_size (often rank 0
    // only); expect that many from now on, so that later steps are not held back.
    expected_ranks_ = complete ? std::max(expected_ranks_, present) : present;

    std::vector<wire::StepRecord> records;  // in rank order
    records.reserve(oldest->second.size());
    for (auto& [rank, record] : oldest->second) records.push_back(std::move(record));
    Findings findings = Observe(step, records);
    judged_through_ = step;
    for (Kind kind : kJudgeOrder) {
      std::optional<Finding> combined;
      if (auto& firing = findings[kind]; !firing.empty()) {
        combined = std::move(firing.front().second);  // the lowest firing rank speaks for the step
        nlohmann::json ranks = nlohmann::json::array();
        for (const auto& [rank, finding] : firing) {
          ranks.push_back(rank);
          combined->severity = std::max(combined->severity, finding.severity);
        }
        combined->evidence["ranks"] = ranks;
        SpellNonFinite(combined->evidence);
        if (firing.size() > 1) combined->message += RanksSuffix(ranks);
        LinkToCause(kind, step, *combined);
        if (attempt_ > 0) combined->evidence["attempt"] = attempt_;
      }
      if (auto event = episodes_[kind]->Judge(step, combined)) events.push_back(std::move(*event));
    }
    pending_.erase(oldest);
  }
  return events;
}

void RunAnalyzer::LinkToCause(Kind kind, std::int64_t step, Finding& finding) {
  const Episode& self = *episodes_[kind];
  std::optional<std::pair<Kind, std::int64_t>>& cause = causes_[kind];
  if (!self.open()) cause.reset();  // a new episode: judged afresh
  if (!cause) {
    const std::int64_t onset = self.open() ? self.latest()->first_step : step;
    for (const CauseRule& rule : kCauseRules) {
      if (rule.symptom != kind) continue;
      std::optional<Episode::Span> span = episodes_[rule.cause]->latest();
      if (!span) continue;
      const std::int64_t start = span->evidence->value("since_step", span->first_step);
      const std::int64_t end = (rule.while_firing ? span->last_step : start) + options_.link_steps;
      if (onset >= std::min(start, span->first_step) && onset <= end) {
        cause.emplace(rule.cause, span->first_step);
        break;
      }
    }
  }
  if (!cause) return;
  // A cause that is itself a symptom hands over to its own cause: an incident has one root.
  for (std::size_t hops = 0; hops < kKindCount && causes_[cause->first]; ++hops)
    cause = *causes_[cause->first];
  finding.caused = true;
  finding.severity = Severity::kInfo;
  finding.evidence["caused_by"] = CauseToJson(*cause);
  finding.cause_note = CauseNote(finding.evidence["caused_by"]);
}

RunAnalyzer::Findings RunAnalyzer::Observe(std::int64_t step,
                                           std::vector<wire::StepRecord>& records) {
  const auto by_rank = [](const wire::StepRecord& a, const wire::StepRecord& b) {
    return a.rank < b.rank;
  };
  // JudgeReady's records come in rank order already; a resumed run's are sorted here.
  if (!std::is_sorted(records.begin(), records.end(), by_rank))
    std::sort(records.begin(), records.end(), by_rank);
  Findings findings;
  const wire::StepRecord& lead = records.front();
  if (std::optional<Finding> change = config_.Observe(lead)) {
    findings[Kind::kConfigChange].emplace_back(lead.rank, std::move(*change));
    for (auto& [rank, detectors] : ranks_) {
      detectors.loss_scale.ConfigChanged(config_.before(), ConfigOf(lead), step);
      detectors.loss_spike.Reset();  // a new configuration may have a new loss level
    }
  }
  auto next = ranks_.begin();
  for (const wire::StepRecord& r : records) {
    auto at = DetectorsAt(next, r.rank);
    next = std::next(at);
    RankDetectors& d = at->second;
    auto note = [&](Kind kind, std::optional<Finding> finding) {
      if (finding) findings[kind].emplace_back(r.rank, std::move(*finding));
    };
    note(Kind::kNonFinite, d.nonfinite.Observe(r));
    note(Kind::kLossScaleMismatch, d.loss_scale.Observe(r));
    note(Kind::kTokenWeightingBias, d.token_weighting.Observe(r));
    note(Kind::kGradExplosion, d.grad_explosion.Observe(r));
    note(Kind::kLossSpike, d.loss_spike.Observe(r));
    note(Kind::kVanishingGrad, d.vanishing_grad.Observe(r));
  }
  if (auto divergence = rank_divergence_.Observe(records)) {
    // One finding names every diverging rank: the first carries it, the others only fire (a copy
    // per rank of evidence that lists every rank would cost the square of the world size).
    auto& firing = findings[Kind::kRankDivergence];
    const Severity severity = divergence->first.severity;
    for (std::int64_t rank : divergence->second) {
      firing.emplace_back(
          rank, firing.empty() ? std::move(divergence->first) : Finding{severity, {}, {}});
    }
  }
  return findings;
}

void RunAnalyzer::Resume(std::int64_t first_step, std::int64_t judged_through,
                         const std::vector<wire::StepRecord>& judged,
                         const std::vector<AlertEvent>& open) {
  first_step_ = first_step;
  // Verdicts the loss-scale detector holds beyond its windows, back in the ranks that reported
  // them, before the history replays through them.
  for (const AlertEvent& episode : open) {
    if (episode.kind != Kind::kLossScaleMismatch) continue;
    Finding held{Severity::kCritical, DetectorMessage(episode), episode.evidence};
    held.evidence.erase("ranks");  // added when judged, as is the attempt
    held.evidence.erase("attempt");
    for (const nlohmann::json& rank : episode.evidence.value("ranks", nlohmann::json::array())) {
      if (rank.is_number_integer()) DetectorsOf(rank.get<std::int64_t>()).loss_scale.Resume(held);
    }
  }
  for (auto begin = judged.begin(); begin != judged.end();) {
    auto end = std::find_if(begin, judged.end(),
                            [&](const wire::StepRecord& r) { return r.step != begin->step; });
    std::vector<wire::StepRecord> ranks(begin, end);
    reporting_world_ = ranks.front().world_size;
    expected_ranks_ =
        std::min<std::int64_t>(reporting_world_, static_cast<std::int64_t>(ranks.size()));
    Observe(begin->step, ranks);  // detector state only: these steps' alerts are stored
    begin = end;
  }
  judged_through_ = judged_through;
  for (const AlertEvent& episode : open) {
    std::int64_t clear_steps = 0, previous = episode.last_step;
    for (const wire::StepRecord& r : judged) {
      if (r.step > previous) {
        ++clear_steps;
        previous = r.step;
      }
    }
    episodes_[episode.kind]->Restore(episode, judged_through, clear_steps);
    if (const auto cause = episode.evidence.find("caused_by"); cause != episode.evidence.end()) {
      if (std::optional<Kind> kind = ParseKind(cause->value("kind", ""))) {
        causes_[episode.kind].emplace(*kind, cause->value("first_step", std::int64_t{0}));
      }
    }
  }
}

}  // namespace lossguard::analyzers
