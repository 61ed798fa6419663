#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "store/types.h"

namespace lossguard::store {

class Connections;

// What the store holds of runs, read on the pool's read connections (beside a write). Thread-safe.
// Throws StorageError, with context, when the database fails.
class RunQueries {
 public:
  explicit RunQueries(Connections& connections) : connections_(connections) {}

  // One page of runs (see RunListQuery); its cost grows with the page, not with the number of runs.
  RunPage List(const RunListQuery& query);
  // Runs whose last record arrived at or after `since` (unix seconds, server clock), most recent
  // first, at most `limit` of them, with the count of all such runs.
  ActiveRuns Active(double since, std::size_t limit);
  std::optional<RunSummary> Get(std::string_view run);
  // Raw records of a run; nullopt when the run does not exist.
  std::optional<StepPage> Steps(std::string_view run, const StepQuery& query);
  // Downsampled series for steps [from, to] (clamped to the run's steps) in at most `max_buckets`
  // buckets per rank, each holding min/max per series. nullopt when the run does not exist.
  std::optional<DownsampledSeries> Downsampled(std::string_view run, std::int64_t from,
                                               std::int64_t to, std::optional<std::int64_t> rank,
                                               std::int64_t max_buckets);
  // What trainers' guards did in a run, in (step, rank) order, at most `limit`.
  std::vector<GuardActionRow> GuardActions(std::string_view run, std::int64_t limit);

 private:
  Connections& connections_;
};

}  // namespace lossguard::store
