// lossguard-server: ingest, storage and REST queries for training-loss sanity.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "analyzer_flags.h"
#include "api/api.h"
#include "api/static_files.h"
#include "config.h"
#include "http/http_server.h"
#include "store/store.h"

int main(int argc, char** argv) {
  CLI::App app{
      "lossguard-server: stores per-step training records, answers REST queries for runs and "
      "alerts."};
  std::string listen = "127.0.0.1:8080";
  std::string db_path = "./lossguard.db";
  std::optional<std::string> token_file;
  int threads = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::string sync = "full";
  std::uint64_t max_body_mb = 64;
  std::size_t max_connections = 4096;
  std::string log_level = "info";
  app.add_option("--listen", listen,
                 "address to listen on, HOST:PORT (IPv6 as [::1]:PORT; port 0 picks one)")
      ->capture_default_str();
  app.add_option("--db", db_path, "SQLite database file (created if missing)")
      ->capture_default_str();
  app.add_option(
      "--token-file", token_file,
      "file holding the bearer token that write endpoints require (else LOSSGUARD_TOKEN)");
  app.add_option("--threads", threads, "I/O threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--sync", sync,
                 "full: fsync every commit (acked records survive power loss); normal: survive a "
                 "crash of the "
                 "server process only")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--max-body-mb", max_body_mb, "largest request body accepted, MiB (larger: 413)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--max-connections", max_connections,
                 "connections served at once; beyond it new ones get 503 and are closed (keep it "
                 "below the open-file limit, which the server raises to its hard limit at start)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  std::string web_root = LOSSGUARD_DEFAULT_WEB_ROOT;
  app.add_option("--web-root", web_root,
                 "directory of the built web dashboard (served at /); the build's web/ output")
      ->capture_default_str();

  lossguard::metrics::MetricsOptions metrics_options;
  app.add_option("--metrics-run-window", metrics_options.run_window_seconds,
                 "GET /metrics exports runs that sent a record within this many seconds")
      ->group("Metrics")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--metrics-max-runs", metrics_options.max_runs,
                 "GET /metrics exports at most this many runs, the most recently active; the "
                 "rest are counted in lossguard_metrics_runs_omitted")
      ->group("Metrics")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();

  lossguard::store::AnalysisOptions analysis;
  std::string analyzers_switch = "on";
  app.add_option("--analyzers", analyzers_switch,
                 "run the detectors on ingest (off: store only, e.g. to measure their cost)")
      ->group("Analyzers")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--analyzer-max-runs", analysis.max_runs,
                 "runs whose analyzer state stays in memory; beyond it the least recently active "
                 "is dropped and rebuilt from the stored steps when its run sends again")
      ->group("Analyzers")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  lossguard::AddAnalyzerFlags(app, analysis.analyzers);
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.set_config("--config", "",
                 "TOML file of flags (name = value, names without the leading --); flags on the "
                 "command line win");

  CLI11_PARSE(app, argc, argv);
  analysis.enabled = analyzers_switch == "on";
  if (auto invalid = lossguard::CheckAnalyzerOptions(analysis.analyzers)) {
    std::fprintf(stderr, "lossguard-server: %s\n", invalid->c_str());
    return 2;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("lossguard"));
  spdlog::set_level(spdlog::level::from_str(log_level));

  auto address = lossguard::client::ParseHostPort(listen);
  if (!address) {
    spdlog::critical("--listen: {}", address.error());
    return 2;
  }
  auto token = lossguard::LoadToken(token_file, std::getenv("LOSSGUARD_TOKEN"));
  if (!token) {
    spdlog::critical("{}", token.error());
    return 2;
  }
  if (auto refused = lossguard::CheckExposure(address.value(), token.value().value_or(""))) {
    spdlog::critical("{}", *refused);
    return 2;
  }
  if (token.value()) {
    if (auto weak = lossguard::WeakTokenWarning(*token.value())) spdlog::warn("{}", *weak);
  }
  const lossguard::FileLimit files = lossguard::RaiseFileLimit();
  if (files.soft < max_connections + lossguard::kReservedDescriptors) {
    spdlog::warn(
        "--max-connections {} is above what the open-file limit {} allows ({} descriptors are kept "
        "for the database and logs); at the limit the server pauses accepting instead",
        max_connections, files.soft, lossguard::kReservedDescriptors);
  }

  try {
    lossguard::store::StoreOptions store_options;
    store_options.durability = sync == "full" ? lossguard::store::Durability::kFull
                                              : lossguard::store::Durability::kNormal;
    store_options.analysis = analysis;
    lossguard::store::Store store(db_path, store_options);

    lossguard::metrics::ServerMetrics metrics;
    lossguard::http::Router router(token.value().value_or(""));
    router.SetObserver(
        [&metrics](std::string_view route, std::string_view method, unsigned status,
                   double seconds) { metrics.ObserveRequest(route, method, status, seconds); });
    lossguard::api::RegisterApi(router, store, &metrics, metrics_options);
    lossguard::api::RegisterStaticFiles(router, web_root);

    lossguard::http::HttpServerOptions options;
    options.threads = threads;
    options.limits.body_limit = max_body_mb << 20;
    options.max_connections = max_connections;
    lossguard::http::HttpServer server(router, options);
    auto endpoint = server.Listen(address.value());
    std::string host = endpoint.address().is_v6() ? "[" + endpoint.address().to_string() + "]"
                                                  : endpoint.address().to_string();
    // The one line on stdout: scripts and tests read the bound address (port 0) from it.
    std::printf("lossguard-server listening on http://%s:%u\n", host.c_str(), endpoint.port());
    std::fflush(stdout);
    spdlog::info("database {} ({} sync), {} threads, auth {}, analyzers {}", db_path, sync, threads,
                 !token.value() ? "off (loopback only)" : "on for writes", analyzers_switch);
    server.Run();
    spdlog::info("stopped; closing the database");
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  return 0;
}
