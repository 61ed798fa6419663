#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "store/location.h"

namespace lossguard::store {

// One table of a copy: its rows in the source and in the destination once copied.
struct TableCopy {
  std::string table;
  std::int64_t source_rows = 0;
  std::int64_t destination_rows = 0;
  std::int64_t already_there = 0;  // rows a previous, interrupted copy had committed
};

struct CopyOptions {
  std::int64_t chunk_rows = 5000;  // rows per destination transaction
  // Told after every committed chunk (table, rows of it copied so far).
  std::function<void(const std::string&, std::int64_t)> progress;
};

// Copies a lossguard database to another location, between engines or not (SQLite to
// PostgreSQL, the other way, or a file to a file): every table's rows as they are, ids included.
// The source is only read, and must not be written meanwhile (stop its server), and be at this
// build's schema version (open it once with this lossguard-server to migrate it). The destination
// is created (migrated) if new; it must be empty or hold what an interrupted copy of the same
// source committed. Rows go in key order, a chunk per transaction: a failure midway leaves whole
// chunks, and running the copy again resumes after the last of them. Returns the tables with their
// row counts, which the copy checks are equal (StorageError otherwise, and on any failure).
std::vector<TableCopy> CopyDatabase(const StoreLocation& from, const StoreLocation& to,
                                    const CopyOptions& options = {});

}  // namespace lossguard::store
