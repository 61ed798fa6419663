#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "lossguard/analyzers/alert_kind.h"

namespace lossguard::store {

// Kinds and severities as the alerts table spells them. Only lossguard writes these columns, from
// the same name table: a name it does not know means a damaged database or one written by a newer
// lossguard, and is an error naming the value (never read as some default).
inline analyzers::Kind ParseStoredKind(std::string_view name) {
  if (auto kind = analyzers::ParseKind(name)) return *kind;
  throw std::runtime_error("the database holds an alert of unknown kind '" + std::string(name) +
                           "' (written by a newer lossguard?)");
}

inline analyzers::Severity ParseStoredSeverity(std::string_view name) {
  if (auto severity = analyzers::ParseSeverity(name)) return *severity;
  throw std::runtime_error("the database holds an alert of unknown severity '" + std::string(name) +
                           "'");
}

inline analyzers::AlertState ParseStoredState(std::string_view name) {
  if (auto state = analyzers::ParseAlertState(name)) return *state;
  throw std::runtime_error("the database holds an alert in unknown state '" + std::string(name) +
                           "'");
}

inline analyzers::NotificationEvent ParseStoredEvent(std::string_view name) {
  if (auto event = analyzers::ParseNotificationEvent(name)) return *event;
  throw std::runtime_error("the database holds a notification of unknown event '" +
                           std::string(name) + "'");
}

}  // namespace lossguard::store
