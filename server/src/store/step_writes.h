#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/analysis.h"
#include "store/database.h"
#include "store/step_row.h"

namespace lossguard::store {

// The one write whose cost grows with the batch: its step rows. Each engine writes them its own
// fastest way (SQLite: a prepared statement per row, in process; PostgreSQL: a few statements per
// batch over arrays, since every statement is a round trip), with one outcome.
class StepWrites {
 public:
  virtual ~StepWrites() = default;
  // Called with n as the write goes: how[0..n) are final (n grows to the batch's size).
  using StoredThrough = std::function<void(std::size_t)>;
  // Stores records[i] as a row of run run_ids[i] (encoded[i] = EncodeStepValues(records[i])),
  // received at `now`, as if one after another in order: a new key is inserted; a key already
  // stored with a different record (another canonical JSON) is replaced (its version counted up);
  // an identical one is a duplicate and left untouched. How each record was stored goes to
  // `how[i]` (how.size() == records.size()), reported as it is known through `stored_through`, so
  // that the records already stored can be judged while the rest are written. Runs inside the
  // caller's transaction.
  virtual void Write(const std::vector<std::int64_t>& run_ids,
                     const std::vector<wire::StepRecord>& records,
                     const std::vector<EncodedStepValues>& encoded, double now,
                     std::span<Analysis::Stored> how, const StoredThrough& stored_through) = 0;
};

// Whether the stored row `row` (its value columns from column `first`) holds `record` exactly.
bool StoredRowHolds(const Statement& row, int first, const wire::StepRecord& record);

// The engine's StepWrites on `db` (which must outlive it).
std::unique_ptr<StepWrites> MakeStepWrites(Database& db);

}  // namespace lossguard::store
