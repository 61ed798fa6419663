#pragma once
// What the RecordStream tests share: a stopped server's address, retries fast enough for a test,
// the warnings a stream gave, bounded waits.

#include <signal.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"
#include "lossguard/collector/record_stream.h"
#include "support/eventually.h"
#include "support/processes.h"
#include "support/temp_dir.h"

namespace lossguard::collector::record_stream_test {

using lossguard::testing::ServerProcess;
using lossguard::testing::TempDir;

inline nlohmann::json RunSummary(const std::string& url, const std::string& run) {
  client::HttpClient client(url);
  return nlohmann::json::parse(client.Get("/api/v1/runs/" + run).body);
}

// Collects warnings so tests can check that nothing is lost silently.
struct Warnings {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> Sink() {
    return [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
  }
  std::string All() {
    std::lock_guard lock(mutex);
    std::string out;
    for (const auto& line : lines) out += line + "\n";
    return out;
  }
};

// A loopback port with nothing listening: a server's, after it stopped.
inline std::string DeadServer(const TempDir& dir, std::uint16_t& port) {
  ServerProcess server({.db = dir.File("probe.db")});
  std::string url = server.url();
  port = client::ParseHttpUrl(url).value().endpoint.port;
  server.Stop(SIGTERM, std::chrono::seconds(10));
  return url;
}

inline RecordStreamOptions FastRetries(const std::string& url, Warnings& warnings) {
  RecordStreamOptions options;
  options.server_url(url);
  options.batch_size(100);
  options.flush_interval(std::chrono::milliseconds(20));
  options.initial_backoff(std::chrono::milliseconds(20));
  options.max_backoff(std::chrono::milliseconds(100));
  options.drain_timeout(std::chrono::milliseconds(500));
  options.warn(warnings.Sink());
  return options;
}

using lossguard::testing::Eventually;
// How long the tests wait for a stream to get somewhere.
inline constexpr std::chrono::seconds kWait{15};

}  // namespace lossguard::collector::record_stream_test
