#include "store/run_queries.h"

#include <algorithm>
#include <map>
#include <set>

#include "store/alert_rows.h"
#include "store/connections.h"
#include "store/deleted_runs.h"
#include "store/migrations.h"
#include "store/rollup_rows.h"
#include "store/step_row.h"
#include "store/stored_names.h"

namespace lossguard::store {

namespace {

std::optional<std::int64_t> FindRunId(Database& db, std::string_view run) {
  if (IsDeletedRunName(run)) return std::nullopt;
  CachedStatement find(db, "SELECT id FROM runs WHERE name = ?");
  find.Bind(1, run);
  if (!find.Step()) return std::nullopt;
  return find.Int(0);
}

// The first and last step of a run, as two index seeks. (One `SELECT MIN(step), MAX(step)` would
// scan every row of the run: SQLite's min/max optimisation applies only to a lone aggregate.)
std::optional<std::pair<std::int64_t, std::int64_t>> StepBounds(Database& db, std::int64_t run_id) {
  CachedStatement first(db, "SELECT step FROM steps WHERE run_id = ? ORDER BY step LIMIT 1");
  first.Bind(1, run_id);
  if (!first.Step()) return std::nullopt;
  const std::int64_t first_step = first.Int(0);
  return std::make_pair(first_step, NewestStoredStep(db, run_id).value_or(first_step));
}

RunSummary Summarise(Database& db, const Statement& run_row) {
  RunSummary run;
  std::int64_t id = run_row.Int(0);
  run.name = std::string(run_row.Text(1));
  run.records = run_row.Int(2);
  run.first_seen = run_row.Number(3).value_or(0);
  run.last_seen = run_row.Number(4).value_or(0);

  if (auto bounds = StepBounds(db, id)) {
    run.first_step = bounds->first;
    CachedStatement latest(db,
                           std::string("SELECT rank, ") + StepValueColumnNames() +
                               " FROM steps WHERE run_id = ? AND step = ? ORDER BY rank LIMIT 1");
    latest.Bind(1, id).Bind(2, bounds->second);
    if (latest.Step()) {
      run.latest = wire::ToJson(ReadStepValues(latest, 1, run.name, bounds->second, latest.Int(0)));
    }
  }

  CachedStatement alerts(
      db,
      "SELECT severity, COUNT(*) FROM alerts WHERE run_id = ? AND state = 'open' "
      "GROUP BY severity");
  alerts.Bind(1, id);
  while (alerts.Step()) {
    run.open_alerts[ParseStoredSeverity(alerts.Text(0))] = alerts.Int(1);
  }
  return run;
}

constexpr const char* kRunColumns =
    "SELECT id, name, record_count, first_seen, last_seen FROM runs";

// Appends blocks, in ascending step order, to a rank's output buckets of `bucket_width` steps.
void MergeInto(std::vector<BlockStats>& buckets, const BlockStats& block,
               std::int64_t bucket_width) {
  if (!buckets.empty() &&
      buckets.back().first_step / bucket_width == block.first_step / bucket_width) {
    buckets.back().Merge(block);
  } else {
    buckets.push_back(block);
  }
}

// The stored blocks of a level >= 1 range for one rank, in order.
void CollectRollups(Database& db, std::int64_t run_id, std::int64_t rank, const BlockRange& range,
                    std::int64_t bucket_width, std::vector<BlockStats>& buckets) {
  CachedStatement rows(db, std::string("SELECT ") + kRollupColumns +
                               " FROM step_rollups WHERE run_id = ? AND rank = ? AND width = ? AND "
                               "bucket BETWEEN ? AND ? "
                               "ORDER BY bucket");
  rows.Bind(1, run_id).Bind(2, rank).Bind(3, kRollupWidths[range.level]);
  rows.Bind(4, range.first_bucket).Bind(5, range.last_bucket);
  while (rows.Step()) MergeInto(buckets, RollupRowToBlock(rows), bucket_width);
}

// The steps of a level-0 range, per rank (every rank, or only `rank`), from one scan in key order.
std::map<std::int64_t, std::vector<BlockStats>> ReadRawRange(Database& db, std::int64_t run_id,
                                                             const BlockRange& range,
                                                             std::optional<std::int64_t> rank) {
  CachedStatement rows(db, std::string("SELECT ") + kRawBlockColumns +
                               ", rank FROM steps WHERE run_id = ?1 AND step BETWEEN ?2 AND ?3 AND "
                               "(CAST(?4 AS BIGINT) IS NULL OR rank = ?4) ORDER BY step, rank");
  rows.Bind(1, run_id).Bind(2, range.first_bucket).Bind(3, range.last_bucket).Bind(4, rank);
  std::map<std::int64_t, std::vector<BlockStats>> out;
  while (rows.Step()) out[rows.Int(kRawBlockColumnCount)].push_back(RawRowToBlock(rows));
  return out;
}

// Rollup rows of a block are written behind its steps: a level-1 block still pending has no row,
// or a stale one, at every level, and a coarser block has none until it is complete
// (CompleteBlocksBelow, from the run's `settled` buckets). Replaces each block of `range` that is
// incomplete or contains a pending level-1 block by its children, down to the pending block's
// steps (level 0), which are read directly. Appends to `out` in step order.
void AvoidPending(const BlockRange& range, const std::set<std::int64_t>& pending,
                  std::int64_t settled, std::vector<BlockRange>& out) {
  if (range.level == 0) {
    out.push_back(range);
    return;
  }
  const std::int64_t per_block = kRollupWidths[range.level] / kRollupWidths[1];
  const std::int64_t fan_out = kRollupWidths[range.level] / kRollupWidths[range.level - 1];
  auto children = [&](std::int64_t first, std::int64_t last) {
    AvoidPending({range.level - 1, first * fan_out, last * fan_out + fan_out - 1}, pending, settled,
                 out);
  };
  // Level 1 is stored for every refreshed block; coarser levels only below this one.
  const std::int64_t incomplete =
      range.level == 1 ? range.last_bucket + 1
                       : std::max(range.first_bucket, CompleteBlocksBelow(range.level, settled));
  const std::int64_t stored_end = std::min(incomplete, range.last_bucket + 1);
  std::int64_t next = range.first_bucket;
  for (auto it = pending.lower_bound(range.first_bucket * per_block);
       it != pending.end() && *it / per_block < stored_end;
       it = pending.lower_bound(next * per_block)) {
    const std::int64_t stale = *it / per_block;
    if (stale > next) out.push_back({range.level, next, stale - 1});
    children(stale, stale);
    next = stale + 1;
  }
  if (next < stored_end) out.push_back({range.level, next, stored_end - 1});
  if (stored_end <= range.last_bucket) children(stored_end, range.last_bucket);
}

std::set<std::int64_t> PendingBlocks(Database& db, std::int64_t run_id, std::int64_t from,
                                     std::int64_t to) {
  CachedStatement rows(
      db, "SELECT bucket FROM rollup_pending WHERE run_id = ? AND bucket BETWEEN ? AND ?");
  rows.Bind(1, run_id).Bind(2, from / kRollupWidths[1]).Bind(3, to / kRollupWidths[1]);
  std::set<std::int64_t> out;
  while (rows.Step()) out.insert(rows.Int(0));
  return out;
}

}  // namespace

RunPage RunQueries::List(const RunListQuery& query) {
  return connections_.Reading([&](Database& db) -> RunPage {
    // Run names are printable ASCII (wire format v1), so every name with the prefix sorts below the
    // prefix followed by DEL: a range on the name index instead of a scan.
    CachedStatement runs(db,
                         std::string(kRunColumns) +
                             " WHERE name > ?1 AND name >= ?2 AND name < ?3 AND last_seen >= ?4 "
                             "ORDER BY name LIMIT ?5");
    runs.Bind(1, query.after.value_or(""))
        .Bind(2, query.prefix)
        .Bind(3, query.prefix + "\x7f")
        .BindNumber(4, query.active_since.value_or(-1e300))
        .Bind(5, query.limit + 1);
    RunPage page;
    while (runs.Step()) {
      if (static_cast<std::int64_t>(page.runs.size()) == query.limit) {
        page.next = page.runs.back().name;
        break;
      }
      page.runs.push_back(Summarise(db, runs));
    }
    return page;
  });
}

ActiveRuns RunQueries::Active(double since, std::size_t limit) {
  return connections_.Reading([&](Database& db) -> ActiveRuns {
    ActiveRuns out;
    const std::string deleted(1, kDeletedRunMark);  // tombstones sort after every real name
    CachedStatement count(db, "SELECT COUNT(*) FROM runs WHERE last_seen >= ? AND name < ?");
    count.BindNumber(1, since).Bind(2, deleted);
    count.Step();
    out.active = static_cast<std::size_t>(count.Int(0));
    CachedStatement runs(
        db, std::string(kRunColumns) +
                " WHERE last_seen >= ? AND name < ? ORDER BY last_seen DESC, name LIMIT ?");
    runs.BindNumber(1, since).Bind(2, deleted).Bind(3, static_cast<std::int64_t>(limit));
    while (runs.Step()) out.runs.push_back(Summarise(db, runs));
    return out;
  });
}

std::optional<RunSummary> RunQueries::Get(std::string_view run) {
  return connections_.Reading([&](Database& db) -> std::optional<RunSummary> {
    if (IsDeletedRunName(run)) return std::nullopt;
    CachedStatement row(db, std::string(kRunColumns) + " WHERE name = ?");
    row.Bind(1, run);
    if (!row.Step()) return std::nullopt;
    return Summarise(db, row);
  });
}

std::optional<StepPage> RunQueries::Steps(std::string_view run, const StepQuery& query) {
  return connections_.Reading([&](Database& db) -> std::optional<StepPage> {
    std::optional<std::int64_t> run_id = FindRunId(db, run);
    if (!run_id) return std::nullopt;
    CachedStatement rows(
        db,
        std::string("SELECT step, rank, ") + StepValueColumnNames() +
            " FROM steps WHERE run_id = ?1 AND step BETWEEN ?2 AND ?3 AND (step > ?2 OR rank >= "
            "?4) AND (CAST(?5 AS BIGINT) IS NULL OR rank = ?5) ORDER BY step, rank LIMIT ?6");
    rows.Bind(1, *run_id)
        .Bind(2, query.from)
        .Bind(3, query.to)
        .Bind(4, query.from_rank)
        .Bind(5, query.rank);
    rows.Bind(6, query.limit + 1);
    StepPage page;
    while (rows.Step()) {
      if (static_cast<std::int64_t>(page.records.size()) == query.limit) {
        page.next = StepPage::Continuation{rows.Int(0), rows.Int(1)};
        break;
      }
      page.records.push_back(
          wire::CanonicalJson(ReadStepValues(rows, 2, std::string(run), rows.Int(0), rows.Int(1))));
    }
    return page;
  });
}

std::optional<DownsampledSeries> RunQueries::Downsampled(std::string_view run, std::int64_t from,
                                                         std::int64_t to,
                                                         std::optional<std::int64_t> rank,
                                                         std::int64_t max_buckets) {
  return connections_.Reading([&](Database& db) -> std::optional<DownsampledSeries> {
    ReadTransaction snapshot(db);  // the pending marks and the rollups of one moment
    std::optional<std::int64_t> run_id = FindRunId(db, run);
    if (!run_id) return std::nullopt;
    DownsampledSeries out;
    auto bounds = StepBounds(db, *run_id);
    if (!bounds) return out;
    out.from = std::max(from, bounds->first);
    out.to = std::min(to, bounds->second);
    if (out.from > out.to) return out;

    Resolution resolution = ChooseResolution(out.from, out.to, max_buckets);
    out.bucket_width = resolution.bucket_width;
    const std::set<std::int64_t> pending = PendingBlocks(db, *run_id, out.from, out.to);
    std::vector<BlockRange> plan;
    for (const BlockRange& range : PlanCover(out.from, out.to, resolution.level))
      AvoidPending(range, pending, SettledBuckets(bounds->second), plan);

    // Steps read directly: one scan per range for all ranks (per rank, a range of steps would be
    // read once for every rank).
    std::map<std::size_t, std::map<std::int64_t, std::vector<BlockStats>>> raw;
    std::set<std::int64_t> ranks;
    if (rank) ranks.insert(*rank);
    for (std::size_t i = 0; i < plan.size(); ++i) {
      if (plan[i].level != 0) continue;
      raw[i] = ReadRawRange(db, *run_id, plan[i], rank);
      if (!rank)
        for (const auto& [r, rows] : raw[i]) ranks.insert(r);
    }
    if (!rank)
      for (std::int64_t r : RollupRanks(db, *run_id)) ranks.insert(r);

    for (std::int64_t r : ranks) {
      DownsampledSeries::Rank series{r, {}};
      for (std::size_t i = 0; i < plan.size(); ++i) {
        if (plan[i].level != 0) {
          CollectRollups(db, *run_id, r, plan[i], out.bucket_width, series.buckets);
          continue;
        }
        auto rows = raw[i].find(r);
        if (rows == raw[i].end()) continue;
        for (const BlockStats& row : rows->second) MergeInto(series.buckets, row, out.bucket_width);
      }
      if (!series.buckets.empty()) out.ranks.push_back(std::move(series));
    }
    return out;
  });
}

std::vector<GuardActionRow> RunQueries::GuardActions(std::string_view run, std::int64_t limit) {
  return connections_.Reading([&](Database& db) {
    CachedStatement rows(
        db, std::string(kGuardActionColumns) + " WHERE r.name = ? ORDER BY g.step, g.rank LIMIT ?");
    rows.Bind(1, run).Bind(2, limit);
    std::vector<GuardActionRow> out;
    while (rows.Step()) out.push_back(ReadGuardAction(rows));
    return out;
  });
}

}  // namespace lossguard::store
