#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/analysis.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "store/types.h"

namespace lossguard::store {

// The write connection and its prepared statements. Not thread-safe: Store serialises calls.
class Store::Writer {
 public:
  Writer(Database db, AnalysisOptions analysis);

  Database& db() { return db_; }

  // `canonical[i]` is CanonicalJson(records[i]), computed by the caller outside the write lock.
  IngestResult Ingest(const std::vector<wire::StepRecord>& records,
                      const std::vector<std::string>& canonical, double now);

 private:
  struct BlockKey {
    std::int64_t run_id, rank, bucket;
    auto operator<=>(const BlockKey&) const = default;
  };

  // What a batch changed in the blocks of one level: new records fold into a block (a min or max
  // only grows outward), a replaced record forces the block to be recomputed from the level below.
  struct RollupChanges {
    std::map<BlockKey, BlockStats> added;
    std::set<BlockKey> recompute;
  };

  std::int64_t RunId(const std::string& name, double now,
                     std::unordered_map<std::string, std::int64_t>& created);
  void RefreshRollups(RollupChanges changes);
  BlockStats Aggregate(int level, const BlockKey& key);
  std::optional<BlockStats> StoredBlock(int level, const BlockKey& key);
  void WriteBlock(int level, const BlockKey& key, const BlockStats& stats);

  Database db_;
  Analysis analysis_;
  std::unordered_map<std::string, std::int64_t> run_ids_;  // committed runs only
  Statement find_run_, insert_run_, touch_run_, insert_step_, replace_step_, raw_block_,
      child_blocks_, upsert_rollup_;
};

}  // namespace lossguard::store
