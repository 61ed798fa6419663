// lossguard-server: ingest, storage and REST queries for training-loss sanity. main() parses the
// flags, CheckStartup() refuses what cannot work before anything is opened, Serve() runs.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "analyzer_flags.h"
#include "api/api.h"
#include "api/contract.h"
#include "api/static_files.h"
#include "http/exposure.h"
#include "http/http_server.h"
#include "http/signal_waiter.h"
#include "lifecycle/run_lifecycle.h"
#include "notify/dispatcher.h"
#include "server_flags.h"
#include "store/store.h"
#include "token.h"

namespace lossguard {
namespace {

// Threads besides the I/O threads that hold a store connection: the write pool (two), the run
// lifecycle, the notification dispatcher, and the writer kept from start-up.
constexpr std::size_t kStoreThreadsBesidesIo = 5;

// What the checks at start found: where to listen, where to store, and the write token if there
// is one.
struct Startup {
  client::HostPort address;
  store::StoreLocation location;
  std::optional<std::string> token;
  std::optional<std::string> read_token;
  std::vector<notify::Webhook> webhooks;
};

// The --notify-webhook flags and the lines of --notify-webhooks-file, parsed; an error names the
// bad one. The same URL twice is one target.
Result<std::vector<notify::Webhook>, std::string> LoadWebhooks(const ServerFlags& f) {
  std::vector<std::string> specs = f.notify_webhooks;
  if (f.notify_webhooks_file) {
    std::ifstream in(*f.notify_webhooks_file);
    if (!in) return "--notify-webhooks-file: cannot read " + *f.notify_webhooks_file;
    std::string line;
    while (std::getline(in, line)) {
      const std::size_t begin = line.find_first_not_of(" \t\r");
      if (begin == std::string::npos || line[begin] == '#') continue;
      const std::size_t end = line.find_last_not_of(" \t\r");
      specs.push_back(line.substr(begin, end - begin + 1));
    }
  }
  std::vector<notify::Webhook> hooks;
  for (const std::string& spec : specs) {
    auto hook = notify::ParseWebhook(spec);
    if (!hook) return hook.error();
    const bool seen = std::any_of(hooks.begin(), hooks.end(), [&](const notify::Webhook& h) {
      return h.target.id == hook.value().target.id;
    });
    if (!seen) hooks.push_back(hook.value());
  }
  return hooks;
}

// Everything refused before the database is opened (bad address, unreadable token, an
// unauthenticated non-loopback listener, detector windows that could never judge), with the reason
// logged; warnings for what only looks risky.
std::optional<Startup> CheckStartup(ServerFlags& f) {
  f.analysis.enabled = f.analyzers_switch == "on";
  if (Status valid = CheckAnalyzerOptions(f.analysis.analyzers); !valid) {
    std::fprintf(stderr, "lossguard-server: %s\n", valid.error().c_str());
    return std::nullopt;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("lossguard"));
  spdlog::set_level(spdlog::level::from_str(f.log_level));

  auto address = client::ParseHostPort(f.listen);
  if (!address) {
    spdlog::critical("--listen: {}", address.error());
    return std::nullopt;
  }
  auto location = store::ParseStoreLocation(f.db);
  if (!location) {
    spdlog::critical("{}", location.error());
    return std::nullopt;
  }
  if (f.db_password_file) {
    if (location.value().backend != store::Backend::kPostgres) {
      spdlog::critical("--db-password-file is for a PostgreSQL --db (postgresql://...)");
      return std::nullopt;
    }
    auto password = ReadSecretFile("--db-password-file", *f.db_password_file);
    if (!password) {
      spdlog::critical("{}", password.error());
      return std::nullopt;
    }
    location.value().postgres.password = password.value().text;
  }
  auto token = LoadToken(f.token_file, std::getenv("LOSSGUARD_TOKEN"));
  if (!token) {
    spdlog::critical("{}", token.error());
    return std::nullopt;
  }
  if (Status exposed = http::CheckExposure(address.value(), token.value().value_or("")); !exposed) {
    spdlog::critical("{}", exposed.error());
    return std::nullopt;
  }
  if (token.value()) {
    if (auto weak = WeakTokenWarning(*token.value())) spdlog::warn("{}", *weak);
  }
  auto read_token = LoadToken(f.read_token_file, std::getenv("LOSSGUARD_READ_TOKEN"));
  if (!read_token) {
    spdlog::critical("{}", read_token.error());
    return std::nullopt;
  }
  if (read_token.value()) {
    if (read_token.value() == token.value()) {
      spdlog::critical(
          "the read token is the write token: give readers a token of their own (anyone holding "
          "the write token can also read)");
      return std::nullopt;
    }
    if (auto weak = WeakTokenWarning(*read_token.value())) spdlog::warn("read token: {}", *weak);
  }
  if (f.tls_cert_file.empty() != f.tls_key_file.empty()) {
    spdlog::critical("--tls-cert-file and --tls-key-file go together: give both, or neither");
    return std::nullopt;
  }
  if (auto warning = http::PlaintextWarning(address.value(), !f.tls_cert_file.empty())) {
    spdlog::warn("{}", *warning);
  }
  const http::ConnectionBudget connections = http::BudgetConnections(
      f.max_connections, http::RaiseFileLimit(),
      http::ReservedDescriptors(kStoreThreadsBesidesIo + static_cast<std::size_t>(f.threads)));
  if (connections.sessions == 0) {
    spdlog::critical("{}", *connections.warning);
    return std::nullopt;
  }
  if (connections.warning) spdlog::warn("{}", *connections.warning);
  f.max_connections = connections.sessions;
  f.max_refusals = connections.refusals;
  auto webhooks = LoadWebhooks(f);
  if (!webhooks) {
    spdlog::critical("{}", webhooks.error());
    return std::nullopt;
  }
  for (const notify::Webhook& hook : webhooks.value()) {
    f.analysis.notify.targets.push_back(hook.target);
  }
  f.analysis.notify.min_severity = *analyzers::ParseSeverity(f.notify_min_severity);
  f.analysis.notify.max_pending = f.notify_outbox_max;
  return Startup{address.value(), location.value(), token.value(), read_token.value(),
                 webhooks.value()};
}

std::string AuthSummary(const Startup& startup) {
  if (startup.token && startup.read_token) return "on for writes and reads";
  if (startup.token) return "on for writes, reads open";
  if (startup.read_token) return "on for reads, writes open (loopback only)";
  return "off (loopback only)";
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// Opens the database and serves until SIGINT/SIGTERM. Returns the exit code.
int Serve(const ServerFlags& f, const Startup& startup) {
  // Until the server listens there is nothing to finish: a signal ends the process, as it would
  // unhandled (an open transaction, a migration's included, is rolled back by the database).
  std::atomic<http::HttpServer*> serving{nullptr};
  http::SignalWaiter signals([&serving](int signal) {
    http::HttpServer* server = serving.load();
    if (server == nullptr) {
      spdlog::warn("signal {} while starting: stopping now", signal);
      std::_Exit(128 + signal);
    }
    spdlog::info("signal {}: finishing requests in progress, then stopping", signal);
    server->Shutdown();
  });
  try {
    store::StoreOptions store_options;
    store_options.durability =
        f.sync == "full" ? store::Durability::kFull : store::Durability::kNormal;
    store_options.analysis = f.analysis;
    store::Store store(startup.location, store_options);

    metrics::ServerMetrics metrics;
    http::Router router(startup.token.value_or(""), startup.read_token.value_or(""));
    router.SetObserver(
        [&metrics](std::string_view route, std::string_view method, unsigned status,
                   double seconds) { metrics.ObserveRequest(route, method, status, seconds); });
    lifecycle::LifecycleOptions lifecycle_options;
    lifecycle_options.retention_days = f.retention_days;
    lifecycle::RunLifecycle lifecycle(store, lifecycle_options);
    api::RegisterApi(router, store, &metrics, f.metrics_options,
                     [&lifecycle] { lifecycle.Kick(); });
    api::RegisterStaticFiles(router, f.web_root);
    api::RegisterContract(router);

    http::HttpServerOptions options;
    options.threads = f.threads;
    options.limits.body_limit = f.max_body_mb << 20;
    options.max_connections = f.max_connections;
    options.max_refusals_in_flight = f.max_refusals;
    options.tls_certificate_file = f.tls_cert_file;
    options.tls_key_file = f.tls_key_file;
    http::HttpServer server(router, options);
    // However this scope ends, the signal thread ends before `server` is destroyed.
    struct StopSignalsFirst {
      http::SignalWaiter& signals;
      ~StopSignalsFirst() { signals.Stop(); }
    } stop_signals_first{signals};
    auto endpoint = server.Listen(startup.address);
    serving.store(&server);
    std::string host = endpoint.address().is_v6() ? "[" + endpoint.address().to_string() + "]"
                                                  : endpoint.address().to_string();
    notify::DispatcherOptions notify_options;
    notify_options.webhooks = startup.webhooks;
    notify_options.ca_file = f.notify_ca_file;
    notify_options.retry_max_seconds = f.notify_retry_max_seconds;
    notify_options.owner =
        notify::ThisProcess(HostName(), host + ":" + std::to_string(endpoint.port()));
    notify::Dispatcher dispatcher(store, notify_options, &metrics);
    dispatcher.Start();
    lifecycle.Start();
    spdlog::info("database {} ({} sync), {} threads, auth {}, analyzers {}, {} webhooks",
                 startup.location.Describe(), f.sync, f.threads, AuthSummary(startup),
                 f.analyzers_switch, startup.webhooks.size());
    if (f.retention_days) {
      spdlog::info("retention: runs inactive for over {} days are deleted", *f.retention_days);
    }
    spdlog::info("dashboard from {}", f.web_root);
    for (const notify::Webhook& hook : startup.webhooks) {
      spdlog::info("notifying {} of {} episodes and above", hook.target.label,
                   f.notify_min_severity);
    }
    // The one line on stdout: scripts and tests read the bound address (port 0) from it. Last, so
    // that whoever reads it finds the start-up log complete.
    std::printf("lossguard-server listening on %s://%s:%u\n",
                f.tls_cert_file.empty() ? "http" : "https", host.c_str(), endpoint.port());
    std::fflush(stdout);
    server.Run();
    dispatcher.Stop();
    lifecycle.Stop();
    spdlog::info("stopped; closing the database");
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace lossguard

int main(int argc, char** argv) {
  CLI::App app{
      "lossguard-server: stores per-step training records, answers REST queries for runs and "
      "alerts."};
  // First, before any thread exists: every thread inherits the mask, and only the SignalWaiter
  // takes SIGINT/SIGTERM.
  lossguard::http::BlockTerminationSignals();
  lossguard::ServerFlags flags;
  lossguard::AddFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  std::optional<lossguard::Startup> startup = lossguard::CheckStartup(flags);
  if (!startup) return 2;
  return lossguard::Serve(flags, *startup);
}
