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

}  // namespace lossguard::analyzers
