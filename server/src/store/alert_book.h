#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "store/types.h"

namespace lossguard::store {

class Connections;

// The stored alerts: what the analyzers raised (they write inside the ingest transaction, see
// Analysis) and what users acknowledged. Thread-safe. Throws StorageError, with context.
class AlertBook {
 public:
  explicit AlertBook(Connections& connections) : connections_(connections) {}

  // Alerts in id order, each with the guard actions that concern it (ConcernsAlert).
  std::vector<Alert> List(const AlertFilter& filter);
  // The open episodes, counted by (run, kind, severity).
  std::vector<OpenAlertGroup> OpenGroups();
  // Inserts an alert as given (fixtures, tools that copy alerts); returns its id. The run must
  // exist.
  std::int64_t Insert(const Alert& alert);
  // Marks an alert acknowledged (the first acknowledgement time is kept); nullopt if no such alert.
  std::optional<Alert> Ack(std::int64_t id);

 private:
  Connections& connections_;
};

}  // namespace lossguard::store
