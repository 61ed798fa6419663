#include "lifecycle/run_lifecycle.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "store/clock.h"

namespace lossguard::lifecycle {

namespace {
// Runs deleted by retention per round: a backlog (retention switched on over years of runs) is
// worked off round by round, not in one burst.
constexpr std::size_t kRetentionRunsPerRound = 100;
}  // namespace

RunLifecycle::RunLifecycle(store::Store& store, LifecycleOptions options)
    : store_(store), options_(options) {}

RunLifecycle::~RunLifecycle() { Stop(); }

double RunLifecycle::RoundSeconds(const LifecycleOptions& options) {
  if (!options.retention_days) return 600;
  return std::clamp(*options.retention_days * 86400 / 10, 1.0, 600.0);
}

void RunLifecycle::Start() {
  thread_.Start([this] { Loop(); });
}

void RunLifecycle::Stop() { thread_.Stop(); }

void RunLifecycle::Kick() { thread_.Kick(); }

void RunLifecycle::Loop() {
  do {
    try {
      if (options_.retention_days) {
        const double before = store::UnixSeconds() - *options_.retention_days * 86400;
        for (const std::string& run :
             store_.deletion().InactiveSince(before, kRetentionRunsPerRound)) {
          if (std::optional<std::int64_t> records = store_.deletion().Delete(run)) {
            spdlog::info("retention: deleted run {} ({} records, inactive for over {} days)", run,
                         *records, *options_.retention_days);
          }
        }
      }
      std::int64_t purged = 0;
      while (!thread_.stopping()) {
        const std::int64_t removed = store_.deletion().PurgeDeleted(options_.chunk_rows);
        if (removed == 0) break;
        purged += removed;
      }
      if (purged > 0) spdlog::debug("purged {} rows of deleted runs", purged);
    } catch (const std::exception& e) {
      // The database is unreachable or failed: the tombstones stay, the next round goes on.
      spdlog::warn("run lifecycle: {}", e.what());
    }
  } while (thread_.Wait(std::chrono::duration<double>(RoundSeconds(options_))));
}

}  // namespace lossguard::lifecycle
