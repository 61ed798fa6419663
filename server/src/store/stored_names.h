#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "lossguard/analyzers/alert_kind.h"

namespace lossguard::store {

// Kinds, severities, alert states and notification events as the tables spell them. Only
// lossguard writes these columns, from the same name tables: a name it does not know means a
// damaged database or one written by a newer lossguard, and is an error naming the value (never
// read as some default).
template <typename Value>
Value StoredOrThrow(std::optional<Value> parsed, std::string_view what, std::string_view name,
                    std::string_view hint = "") {
  if (parsed) return *parsed;
  throw std::runtime_error("the database holds " + std::string(what) + " '" + std::string(name) +
                           "'" + std::string(hint));
}

inline analyzers::Kind ParseStoredKind(std::string_view name) {
  return StoredOrThrow(analyzers::ParseKind(name), "an alert of unknown kind", name,
                       " (written by a newer lossguard?)");
}

inline analyzers::Severity ParseStoredSeverity(std::string_view name) {
  return StoredOrThrow(analyzers::ParseSeverity(name), "an alert of unknown severity", name);
}

inline analyzers::AlertState ParseStoredState(std::string_view name) {
  return StoredOrThrow(analyzers::ParseAlertState(name), "an alert in unknown state", name);
}

inline analyzers::NotificationEvent ParseStoredEvent(std::string_view name) {
  return StoredOrThrow(analyzers::ParseNotificationEvent(name), "a notification of unknown event",
                       name);
}

}  // namespace lossguard::store
