#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "metrics/server_metrics.h"
#include "store/analysis.h"

namespace lossguard {

// The dashboard installed beside this binary (PREFIX/share/lossguard/web for PREFIX/bin), else the
// one the build tree lays out (web/CMakeLists.txt).
std::string DefaultWebRoot();

// lossguard-server's command line, as parsed; CheckStartup (main.cc) turns it into what the
// server runs with, refusing what cannot work.
struct ServerFlags {
  std::string listen = "127.0.0.1:8080";
  std::string db = "./lossguard.db";
  std::optional<std::string> db_password_file;
  std::optional<std::string> token_file;
  std::optional<std::string> read_token_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  int threads = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::string sync = "full";
  std::uint64_t max_body_mb = 64;
  std::size_t max_connections = 4096;
  std::size_t max_refusals = 0;  // set from the open-file limit, not a flag
  std::string log_level = "info";
  std::string web_root = DefaultWebRoot();
  metrics::MetricsOptions metrics_options;
  store::AnalysisOptions analysis;
  std::string analyzers_switch = "on";
  std::vector<std::string> notify_webhooks;
  std::optional<std::string> notify_webhooks_file;
  std::string notify_min_severity = "warning";
  std::int64_t notify_outbox_max = 10000;
  std::string notify_ca_file;
  double notify_retry_max_seconds = 300;
  std::optional<double> retention_days;
};

// Declares every flag of lossguard-server on `app`, bound to `flags`.
void AddFlags(CLI::App& app, ServerFlags& flags);

}  // namespace lossguard
