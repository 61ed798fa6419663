#include "store/run_deletion.h"

#include <spdlog/spdlog.h>

#include "store/connections.h"
#include "store/deleted_runs.h"
#include "store/writer.h"

namespace lossguard::store {

namespace {
// Removes rows of `table` of `run_id` in key order, about `chunk_rows` of them: up to the key of
// the chunk_rows-th row (a whole step of every rank, for steps), or all that are left. Returns how
// many it removed.
std::int64_t PurgeChunk(Database& db, const char* table, const std::vector<const char*>& key,
                        std::int64_t run_id, std::int64_t chunk_rows) {
  std::string columns, placeholders;
  for (const char* column : key) {
    columns += std::string(columns.empty() ? "" : ", ") + column;
    placeholders += placeholders.empty() ? "?" : ", ?";
  }
  const std::string from = std::string(" FROM ") + table + " WHERE run_id = ?";
  std::vector<std::int64_t> last_key;  // of the chunk's last row
  {
    CachedStatement boundary(
        db, "SELECT " + columns + from + " ORDER BY " + columns + " LIMIT 1 OFFSET ?");
    boundary.Bind(1, run_id).Bind(2, chunk_rows - 1);
    if (boundary.Step()) {
      for (std::size_t i = 0; i < key.size(); ++i) {
        last_key.push_back(boundary.Int(static_cast<int>(i)));
      }
    }
  }
  if (last_key.empty()) {
    CachedStatement(db, "DELETE" + from).Bind(1, run_id).Step();
    return db.Changes();
  }
  CachedStatement some(db, "DELETE" + from + " AND (" + columns + ") <= (" + placeholders + ")");
  some.Bind(1, run_id);
  for (std::size_t i = 0; i < key.size(); ++i) some.Bind(static_cast<int>(i) + 2, last_key[i]);
  some.Step();
  return db.Changes();
}
}  // namespace

std::optional<std::int64_t> RunDeletion::Delete(std::string_view run) {
  return connections_.Writing([&](Writer& writer) { return writer.DeleteRun(run); });
}

std::vector<std::string> RunDeletion::InactiveSince(double before, std::size_t limit) {
  return connections_.Reading([&](Database& db) {
    CachedStatement runs(db,
                         "SELECT name FROM runs WHERE last_seen < ? AND name < ? ORDER BY "
                         "last_seen LIMIT ?");
    runs.BindNumber(1, before)
        .Bind(2, std::string(1, kDeletedRunMark))
        .Bind(3, static_cast<std::int64_t>(limit));
    std::vector<std::string> out;
    while (runs.Step()) out.emplace_back(runs.Text(0));
    return out;
  });
}

std::int64_t RunDeletion::PurgeDeleted(std::int64_t chunk_rows) {
  return connections_.Writing([&](Writer& writer) -> std::int64_t {
    Database& db = writer.db();
    std::int64_t removed = 0;
    {
      Transaction transaction(db);
      std::int64_t run_id = 0;
      {
        CachedStatement deleted(db, "SELECT id FROM runs WHERE name >= ? ORDER BY id LIMIT 1");
        deleted.Bind(1, std::string(1, kDeletedRunMark));
        if (!deleted.Step()) return 0;
        run_id = deleted.Int(0);
      }
      db.LockRun(run_id);
      removed = PurgeChunk(db, "steps", {"step"}, run_id, chunk_rows);
      if (removed < chunk_rows) {
        removed += PurgeChunk(db, "step_rollups", {"rank", "width", "bucket"}, run_id,
                              chunk_rows - removed);
      }
      if (removed < chunk_rows) {  // nothing of it is left
        CachedStatement(db, "DELETE FROM runs WHERE id = ?").Bind(1, run_id).Step();
        ++removed;
        spdlog::info("the rows of deleted run #{} are purged", run_id);
      }
      transaction.Commit();
    }
    if (connections_.backend() == Backend::kSqlite) {
      // Databases created with auto_vacuum = INCREMENTAL give the freed pages back to the file
      // system; on older ones this does nothing, and the free pages are reused by new records.
      db.Exec("PRAGMA incremental_vacuum");
    }
    return removed;
  });
}

}  // namespace lossguard::store
