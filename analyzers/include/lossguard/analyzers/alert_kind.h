#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lossguard::analyzers {

// The alert kinds: one episode per kind per run. Their names (KindName) are stored in databases,
// queried over REST and exported as Prometheus labels: stable API. A new kind is added here and in
// the name table in alert_kind.cc, nowhere else; per-kind state is indexed through PerKind.
enum class Kind : std::uint8_t {
  kNonFinite,
  kLossScaleMismatch,
  kTokenWeightingBias,
  kGradExplosion,
  kLossSpike,
  kVanishingGrad,
  kConfigChange,
  kRankDivergence,
};
inline constexpr std::size_t kKindCount = 8;
inline constexpr std::array<Kind, kKindCount> kAllKinds = {
    Kind::kNonFinite, Kind::kLossScaleMismatch, Kind::kTokenWeightingBias, Kind::kGradExplosion,
    Kind::kLossSpike, Kind::kVanishingGrad,     Kind::kConfigChange,       Kind::kRankDivergence};

// "nonfinite", "loss_scale_mismatch", ...
std::string_view KindName(Kind kind);
// nullopt for a name that is not a kind (case-sensitive).
std::optional<Kind> ParseKind(std::string_view name);

// One value per kind, addressed by kind (never by position).
template <typename T>
class PerKind {
 public:
  T& operator[](Kind kind) { return values_[static_cast<std::size_t>(kind)]; }
  const T& operator[](Kind kind) const { return values_[static_cast<std::size_t>(kind)]; }

 private:
  std::array<T, kKindCount> values_{};
};

enum class Severity : std::uint8_t { kInfo, kWarning, kCritical };
inline constexpr std::array<Severity, 3> kAllSeverities = {Severity::kInfo, Severity::kWarning,
                                                           Severity::kCritical};

// "info", "warning", "critical"
std::string_view SeverityName(Severity severity);
// nullopt for a name that is not a severity (case-sensitive).
std::optional<Severity> ParseSeverity(std::string_view name);

// An episode is open until its detector resolves it; a resolved episode never opens again (a new
// occurrence is a new episode).
enum class AlertState : std::uint8_t { kOpen, kResolved };
inline constexpr std::array<AlertState, 2> kAllAlertStates = {AlertState::kOpen,
                                                              AlertState::kResolved};
// "open", "resolved"
std::string_view AlertStateName(AlertState state);
// nullopt for a name that is not a state (case-sensitive).
std::optional<AlertState> ParseAlertState(std::string_view name);

// What a notification tells about its episode: it reached the notified severity, rose above the
// severity told before, or ended.
enum class NotificationEvent : std::uint8_t { kOpened, kEscalated, kResolved };
inline constexpr std::array<NotificationEvent, 3> kAllNotificationEvents = {
    NotificationEvent::kOpened, NotificationEvent::kEscalated, NotificationEvent::kResolved};
// "opened", "escalated", "resolved"
std::string_view NotificationEventName(NotificationEvent event);
std::optional<NotificationEvent> ParseNotificationEvent(std::string_view name);

}  // namespace lossguard::analyzers
