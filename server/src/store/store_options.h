#pragma once

#include "store/analysis.h"

namespace lossguard::store {

enum class Durability {
  // SQLite: fsync the WAL at every commit. PostgreSQL: synchronous_commit on. An acknowledged batch
  // survives power loss.
  kFull,
  // SQLite: fsync at checkpoints only. PostgreSQL: synchronous_commit off. Survives a crash or
  // kill -9 of lossguard-server, not power loss (nor, on PostgreSQL, a crash of its server).
  kNormal,
};

struct StoreOptions {
  Durability durability = Durability::kFull;
  int read_connections = 4;
  AnalysisOptions analysis;  // the analyzers run in the ingest transaction
};

}  // namespace lossguard::store
