#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <string_view>

#include "store/store.h"

namespace lossguard::metrics {

struct MetricsOptions {
  // Only runs that sent a record within this many seconds are exported (a finished run's series
  // go stale in Prometheus instead of being repeated forever).
  double run_window_seconds = 3600;
  // At most this many runs, the most recently active first; the rest are left out and counted in
  // lossguard_metrics_runs_omitted. Bounds the series per scrape at about 15 x max_runs.
  std::size_t max_runs = 200;
};

// The server's Prometheus metrics. Process-wide counters and the request-latency histogram live
// in a prometheus-cpp registry for the server's lifetime; per-run gauges are built from the store
// at each scrape, so a run that goes quiet or is over the cap simply stops being exported.
// Thread-safe.
class ServerMetrics {
 public:
  ServerMetrics();

  void ObserveRequest(std::string_view route, std::string_view method, unsigned status,
                      double seconds);
  void CountIngest(const store::IngestResult& result);
  void CountRejectedBatch(std::string_view reason);
  // A notification post to the webhook `target` (its label): delivered, rejected (a 4xx: dropped)
  // or retried (the receiver failed; it stays in the outbox).
  void CountNotification(std::string_view target, std::string_view outcome);
  // Notifications dropped from a full outbox, counted when the receiver is told of them.
  void CountDroppedNotifications(std::string_view target, std::int64_t dropped);

  // The Prometheus text exposition (format 0.0.4) of everything, with runs active at `now`.
  std::string Render(store::Store& store, const MetricsOptions& options, double now);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& records_;
  prometheus::Family<prometheus::Counter>& guard_actions_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& notifications_;
  prometheus::Family<prometheus::Counter>& notifications_dropped_;
};

}  // namespace lossguard::metrics
