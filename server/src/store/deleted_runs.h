#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lossguard::store {

// A deleted run keeps its row, renamed to its tombstone, until its steps and rollups are purged in
// bounded chunks (Store::PurgeDeletedRuns). Wire-format run names are printable ASCII, so a name
// starting with DEL (0x7f) is never a real run's: the name is free for a new run at once, and
// every range of real names (prefix searches, listings) ends below the tombstones.
inline constexpr char kDeletedRunMark = '\x7f';

inline std::string DeletedRunName(std::int64_t run_id) {
  return std::string(1, kDeletedRunMark) + "deleted:" + std::to_string(run_id);
}

inline bool IsDeletedRunName(std::string_view name) {
  return !name.empty() && name.front() == kDeletedRunMark;
}

}  // namespace lossguard::store
