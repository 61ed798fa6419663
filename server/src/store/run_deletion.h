#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lossguard::store {

class Connections;

// Deleting runs: at once from every query, their rows later in bounded chunks. Thread-safe.
// Throws StorageError, with context.
class RunDeletion {
 public:
  explicit RunDeletion(Connections& connections) : connections_(connections) {}

  // Deletes a run: at once it is gone from every query and its name is free for a new run (a
  // trainer sending again starts afresh); its alerts and notifications go in the same transaction,
  // its steps and rollups later, in bounded chunks (PurgeDeleted). Returns the run's record count,
  // nullopt if there is no such run.
  std::optional<std::int64_t> Delete(std::string_view run);
  // Runs whose last record arrived before `before` (unix seconds, server clock), least recent
  // first, at most `limit`.
  std::vector<std::string> InactiveSince(double before, std::size_t limit);
  // Removes up to about `chunk_rows` rows of deleted runs in one transaction (the write lock is
  // released between calls, so ingest goes on beside a large deletion), and on SQLite returns the
  // freed pages to the file system. Returns how many rows it removed: 0 once nothing is left.
  std::int64_t PurgeDeleted(std::int64_t chunk_rows);

 private:
  Connections& connections_;
};

}  // namespace lossguard::store
