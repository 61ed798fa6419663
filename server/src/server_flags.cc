#include "server_flags.h"

#include <filesystem>

#include "analyzer_flags.h"

namespace lossguard {

std::string DefaultWebRoot() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    std::filesystem::path prefix = self.parent_path();
    for (const auto& part : std::filesystem::path(LOSSGUARD_INSTALL_BINDIR)) {
      if (!part.empty()) prefix = prefix.parent_path();
    }
    const std::filesystem::path installed = prefix / LOSSGUARD_INSTALL_WEB_DIR;
    if (std::filesystem::exists(installed / "index.html", ec)) return installed.string();
  }
  return LOSSGUARD_DEFAULT_WEB_ROOT;
}

void AddFlags(CLI::App& app, ServerFlags& f) {
  app.add_option("--listen", f.listen,
                 "address to listen on, HOST:PORT (IPv6 as [::1]:PORT; port 0 picks one)")
      ->capture_default_str();
  app.add_option("--db", f.db,
                 "where to store: a SQLite file (PATH or sqlite:PATH, created if missing), or a "
                 "PostgreSQL database several servers may share (postgresql://USER@HOST:PORT/DB; "
                 "the password from --db-password-file, PGPASSWORD or ~/.pgpass, never in the URI)")
      ->capture_default_str();
  app.add_option("--db-password-file", f.db_password_file,
                 "file holding the PostgreSQL password (for a postgresql:// --db)");
  app.add_option(
      "--token-file", f.token_file,
      "file holding the bearer token that write endpoints require (else LOSSGUARD_TOKEN)");
  app.add_option("--read-token-file", f.read_token_file,
                 "file holding a second bearer token that every read endpoint, /metrics and the "
                 "dashboard's data then require (else LOSSGUARD_READ_TOKEN; the write token reads "
                 "too). Default: reads are open");
  app.add_option("--tls-cert-file", f.tls_cert_file,
                 "serve HTTPS with this PEM certificate chain (the server's certificate first); "
                 "with --tls-key-file")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key-file", f.tls_key_file,
                 "the certificate's private key (PEM, unencrypted; keep it readable by the server "
                 "only)")
      ->check(CLI::ExistingFile);
  app.add_option("--threads", f.threads, "I/O threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--sync", f.sync,
                 "full: fsync every commit (acked records survive power loss); normal: survive a "
                 "crash of the "
                 "server process only")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--max-body-mb", f.max_body_mb, "largest request body accepted, MiB (larger: 413)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--max-connections", f.max_connections,
                 "connections served at once; beyond it new ones get 503 and are closed (keep it "
                 "below the open-file limit, which the server raises to its hard limit at start)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--web-root", f.web_root,
                 "directory of the built web dashboard (served at /); default: the one installed "
                 "beside the server, else the build's web/ output")
      ->capture_default_str();

  app.add_option("--metrics-run-window", f.metrics_options.run_window_seconds,
                 "GET /metrics exports runs that sent a record within this many seconds")
      ->group("Metrics")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--metrics-max-runs", f.metrics_options.max_runs,
                 "GET /metrics exports at most this many runs, the most recently active; the "
                 "rest are counted in lossguard_metrics_runs_omitted")
      ->group("Metrics")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();

  app.add_option("--analyzers", f.analyzers_switch,
                 "run the detectors on ingest (off: store only, e.g. to measure their cost)")
      ->group("Analyzers")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--analyzer-max-runs", f.analysis.max_runs,
                 "runs whose analyzer state stays in memory; beyond it the least recently active "
                 "is dropped and rebuilt from the stored steps when its run sends again")
      ->group("Analyzers")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  AddAnalyzerFlags(app, f.analysis.analyzers);

  app.add_option("--retention-days", f.retention_days,
                 "delete runs that sent no record for this many days (fractions allowed); their "
                 "rows are removed in small transactions beside ingest. Default: keep every run")
      ->group("Storage")
      ->check(CLI::Range(0.00001, 36500.0));

  app.add_option("--notify-webhook", f.notify_webhooks,
                 "post alert notifications (an episode opens, escalates, resolves) to this URL: "
                 "[json:|slack:]http[s]://HOST[:PORT]/PATH, json (lossguard's body) by default; "
                 "repeatable. The URL shows in the process list: put secret ones in "
                 "--notify-webhooks-file")
      ->group("Notifications");
  app.add_option("--notify-webhooks-file", f.notify_webhooks_file,
                 "file of webhook URLs as --notify-webhook takes them, one per line (# comments)")
      ->group("Notifications");
  app.add_option("--notify-min-severity", f.notify_min_severity,
                 "notify of episodes from this severity on")
      ->group("Notifications")
      ->check(CLI::IsMember({"info", "warning", "critical"}))
      ->capture_default_str();
  app.add_option("--notify-outbox-max", f.notify_outbox_max,
                 "undelivered notifications kept per webhook; beyond it the oldest are dropped "
                 "(logged, and the next delivered notification says how many)")
      ->group("Notifications")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--notify-ca-file", f.notify_ca_file,
                 "PEM certificate authorities to verify https webhooks with (default: the "
                 "system's)")
      ->group("Notifications")
      ->check(CLI::ExistingFile);
  app.add_option("--notify-retry-max-seconds", f.notify_retry_max_seconds,
                 "longest wait between retries of a failing webhook (backoff doubles up to it)")
      ->group("Notifications")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.set_config("--config", "",
                 "TOML file of flags (name = value, names without the leading --); flags on the "
                 "command line win");
}

}  // namespace lossguard
