#pragma once

#include <functional>

#include "http/router.h"
#include "metrics/server_metrics.h"
#include "store/store.h"

namespace lossguard::api {

// Registers REST API v1 and /healthz on `router`. Handlers keep a reference to `store`, which must
// outlive the router. Write endpoints (POST, DELETE) are registered as requiring the router's
// token.
// With `metrics`, ingest outcomes are counted there, and GET /metrics serves the Prometheus
// exposition with `metrics_options`; both must outlive the router. `run_deleted` is called after
// DELETE /api/v1/runs/{run} removed a run (its rows are purged in the background).
void RegisterApi(http::Router& router, store::Store& store,
                 metrics::ServerMetrics* metrics = nullptr,
                 const metrics::MetricsOptions& metrics_options = {},
                 std::function<void()> run_deleted = {});

}  // namespace lossguard::api
