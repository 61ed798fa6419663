#pragma once

#include <cstdint>
#include <optional>

#include "store/store.h"
#include "worker/worker_thread.h"

namespace lossguard::lifecycle {

struct LifecycleOptions {
  // Runs that sent nothing for longer are deleted (--retention-days); none: runs are kept.
  std::optional<double> retention_days;
  // Rows removed per transaction while purging a deleted run: small enough that an ingest batch
  // waits for one chunk at most (a few milliseconds), not for the whole run.
  std::int64_t chunk_rows = 5000;
};

// The background side of deleting runs, on a thread of its own: deletes the runs past retention,
// and purges the rows of deleted runs (DELETE /api/v1/runs/{run}, retention, or a purge a previous
// server stopped in the middle of) chunk by chunk, each chunk its own transaction. Thread-safe.
class RunLifecycle {
 public:
  RunLifecycle(store::Store& store, LifecycleOptions options);
  ~RunLifecycle();
  RunLifecycle(const RunLifecycle&) = delete;

  void Start();
  void Stop();  // after the chunk in progress
  // A run was deleted: purge it now rather than at the next round.
  void Kick();

  // How often retention is applied: a tenth of the retention, between 1 s and 10 minutes.
  static double RoundSeconds(const LifecycleOptions& options);

 private:
  void Loop();

  store::Store& store_;
  LifecycleOptions options_;
  worker::WorkerThread thread_;
};

}  // namespace lossguard::lifecycle
