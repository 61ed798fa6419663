#include "store/store.h"

#include <spdlog/spdlog.h>

#include "store/clock.h"
#include "store/migrations.h"
#include "store/read_lease.h"
#include "store/writer.h"

namespace lossguard::store {

namespace {
Database OpenWriter(const std::filesystem::path& path, const StoreOptions& options) {
  Database db(path, /*read_only=*/false, /*create=*/true);
  db.Exec("PRAGMA journal_mode = WAL");
  db.Exec(options.durability == Durability::kFull ? "PRAGMA synchronous = FULL"
                                                  : "PRAGMA synchronous = NORMAL");
  db.Exec("PRAGMA cache_size = -65536");
  if (SchemaVersion(db) == 0) {
    Statement tables(db, "SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1");
    if (tables.Step()) {
      throw SqliteError(path.string() + " is not a lossguard database (it has tables, e.g. \"" +
                        std::string(tables.Text(0)) +
                        "\", but no schema_version); refusing to modify it");
    }
  }
  ApplyMigrations(db, BuiltinMigrations());
  return db;
}
}  // namespace

Store::Store(const std::filesystem::path& path, StoreOptions options)
    : path_(path),
      options_(options),
      writer_(std::make_unique<Writer>(OpenWriter(path, options), options.analysis)) {}

Store::~Store() {
  std::lock_guard lock(write_mutex_);
  idle_readers_.clear();
  try {
    // Fold the WAL back into the database so that a cleanly stopped server leaves one file.
    writer_->db().Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const SqliteError& e) {
    spdlog::warn("checkpoint on close: {}", e.what());
  }
}

Store::ReadLease Store::Read() {
  {
    std::lock_guard lock(read_mutex_);
    if (!idle_readers_.empty()) {
      std::unique_ptr<Database> db = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return ReadLease(*this, std::move(db));
    }
  }
  auto db = std::make_unique<Database>(path_, /*read_only=*/true, /*create=*/false);
  return ReadLease(*this, std::move(db));
}

IngestResult Store::Ingest(const std::vector<wire::StepRecord>& records) {
  std::vector<std::string> canonical;
  canonical.reserve(records.size());
  for (const wire::StepRecord& record : records) canonical.push_back(wire::CanonicalJson(record));
  double now = UnixSeconds();
  std::lock_guard lock(write_mutex_);
  return writer_->Ingest(records, canonical, now);
}

}  // namespace lossguard::store
