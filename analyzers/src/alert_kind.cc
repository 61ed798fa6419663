#include "lossguard/analyzers/alert_kind.h"

#include <utility>

namespace lossguard::analyzers {

namespace {
// The one place a kind or a severity meets its name.
constexpr std::array<std::pair<Kind, std::string_view>, kKindCount> kKindNames = {{
    {Kind::kNonFinite, "nonfinite"},
    {Kind::kLossScaleMismatch, "loss_scale_mismatch"},
    {Kind::kTokenWeightingBias, "token_weighting_bias"},
    {Kind::kGradExplosion, "grad_explosion"},
    {Kind::kLossSpike, "loss_spike"},
    {Kind::kVanishingGrad, "vanishing_grad"},
    {Kind::kConfigChange, "config_change"},
    {Kind::kRankDivergence, "rank_divergence"},
}};
constexpr std::array<std::pair<Severity, std::string_view>, 3> kSeverityNames = {{
    {Severity::kInfo, "info"},
    {Severity::kWarning, "warning"},
    {Severity::kCritical, "critical"},
}};
constexpr std::array<std::pair<AlertState, std::string_view>, 2> kAlertStateNames = {{
    {AlertState::kOpen, "open"},
    {AlertState::kResolved, "resolved"},
}};

constexpr std::array<std::pair<NotificationEvent, std::string_view>, 3> kNotificationEventNames = {{
    {NotificationEvent::kOpened, "opened"},
    {NotificationEvent::kEscalated, "escalated"},
    {NotificationEvent::kResolved, "resolved"},
}};

// Both tables list every value once, in the enum's order (so that lookup by value is an index).
template <typename Enum, std::size_t N, std::size_t M>
constexpr bool InEnumOrder(const std::array<std::pair<Enum, std::string_view>, N>& names,
                           const std::array<Enum, M>& all) {
  if (N != M) return false;
  for (std::size_t i = 0; i < N; ++i) {
    if (static_cast<std::size_t>(names[i].first) != i || all[i] != names[i].first) return false;
  }
  return true;
}
static_assert(InEnumOrder(kKindNames, kAllKinds));
static_assert(InEnumOrder(kSeverityNames, kAllSeverities));
static_assert(InEnumOrder(kAlertStateNames, kAllAlertStates));
static_assert(InEnumOrder(kNotificationEventNames, kAllNotificationEvents));

template <typename Enum, std::size_t N>
std::optional<Enum> Parse(const std::array<std::pair<Enum, std::string_view>, N>& names,
                          std::string_view name) {
  for (const auto& [value, text] : names) {
    if (text == name) return value;
  }
  return std::nullopt;
}
}  // namespace

std::string_view KindName(Kind kind) {
  return kKindNames.at(static_cast<std::size_t>(kind)).second;
}

std::optional<Kind> ParseKind(std::string_view name) { return Parse(kKindNames, name); }

std::string_view SeverityName(Severity severity) {
  return kSeverityNames.at(static_cast<std::size_t>(severity)).second;
}

std::optional<Severity> ParseSeverity(std::string_view name) { return Parse(kSeverityNames, name); }

std::string_view AlertStateName(AlertState state) {
  return kAlertStateNames.at(static_cast<std::size_t>(state)).second;
}

std::optional<AlertState> ParseAlertState(std::string_view name) {
  return Parse(kAlertStateNames, name);
}

std::string_view NotificationEventName(NotificationEvent event) {
  return kNotificationEventNames.at(static_cast<std::size_t>(event)).second;
}

std::optional<NotificationEvent> ParseNotificationEvent(std::string_view name) {
  return Parse(kNotificationEventNames, name);
}

}  // namespace lossguard::analyzers
