#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>
#include <vector>

#include "lossguard/analyzers/alert_event.h"

namespace lossguard::analyzers {

// The latest state of each alert episode, folded from the events that opened, extended and
// resolved it. An episode is keyed by (run, kind, first_step, attempt), the key the store upserts
// on, and
// episodes are kept in the order they opened. `Run` is whatever names a run where it is used (the
// store's run id, the CLI's run name).
template <typename Run>
class EpisodeLog {
 public:
  void Apply(const Run& run, AlertEvent event) {
    auto [it, inserted] = index_.try_emplace(
        std::make_tuple(run, event.kind, event.first_step, event.attempt), episodes_.size());
    if (inserted) {
      episodes_.emplace_back(run, std::move(event));
    } else {
      episodes_[it->second].second = std::move(event);
    }
  }
  void Apply(const Run& run, std::vector<AlertEvent> events) {
    for (AlertEvent& event : events) Apply(run, std::move(event));
  }

  // (run, latest event) per episode, in the order the episodes opened.
  const std::vector<std::pair<Run, AlertEvent>>& episodes() const { return episodes_; }
  void Clear() {
    index_.clear();
    episodes_.clear();
  }

 private:
  std::map<std::tuple<Run, Kind, std::int64_t, std::int64_t>, std::size_t> index_;
  std::vector<std::pair<Run, AlertEvent>> episodes_;
};

// kResolved after a kResolve event, else kOpen: the state an episode is stored and shown in.
inline AlertState EpisodeState(const AlertEvent& latest) {
  return latest.action == AlertEvent::Action::kResolve ? AlertState::kResolved : AlertState::kOpen;
}

// An episode as the REST API, the CLI and exports show it: kind, severity, state, rank, first_step,
// last_step, message, evidence. Callers add what they know besides (id, run, timestamps).
inline nlohmann::json EpisodeToJson(const AlertEvent& latest) {
  return {
      {"kind", KindName(latest.kind)},
      {"severity", SeverityName(latest.severity)},
      {"state", AlertStateName(EpisodeState(latest))},
      {"rank", latest.rank ? nlohmann::json(*latest.rank) : nlohmann::json()},
      {"first_step", latest.first_step},
      {"last_step", latest.last_step},
      {"message", latest.message},
      {"evidence", latest.evidence},
  };
}

}  // namespace lossguard::analyzers
