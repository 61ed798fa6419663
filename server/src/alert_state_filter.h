#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/analyzers/alert_kind.h"

namespace lossguard {

// The state filter of alert listings: the REST API's ?state= and the CLI's --state. One of the
// analyzers' states, or every state.
enum class AlertStateFilter { kOpen, kResolved, kAll };
inline constexpr std::array<AlertStateFilter, 3> kAllAlertStateFilters = {
    AlertStateFilter::kOpen, AlertStateFilter::kResolved, AlertStateFilter::kAll};

// The state a filter keeps; nullopt for kAll.
inline std::optional<analyzers::AlertState> FilteredState(AlertStateFilter filter) {
  switch (filter) {
    case AlertStateFilter::kOpen:
      return analyzers::AlertState::kOpen;
    case AlertStateFilter::kResolved:
      return analyzers::AlertState::kResolved;
    case AlertStateFilter::kAll:
      break;
  }
  return std::nullopt;
}

// "open", "resolved" (the states' own names), "all".
inline std::string_view AlertStateFilterName(AlertStateFilter filter) {
  const std::optional<analyzers::AlertState> state = FilteredState(filter);
  return state ? analyzers::AlertStateName(*state) : std::string_view("all");
}

inline std::vector<std::string> AlertStateFilterNames() {
  std::vector<std::string> names;
  for (AlertStateFilter filter : kAllAlertStateFilters) {
    names.emplace_back(AlertStateFilterName(filter));
  }
  return names;
}

}  // namespace lossguard
