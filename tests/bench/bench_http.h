#pragma once

// What the HTTP benchmarks share: posting bodies from several connections, checking answers,
// percentiles.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lossguard/client/http_client.h"

namespace lossguard::bench {

// The value at fraction `p` (0..1) of the sorted values; 0 for none.
inline double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  std::size_t index =
      std::min(values.size() - 1, static_cast<std::size_t>(p * static_cast<double>(values.size())));
  return values[index];
}

// Throws with the server's answer unless it is a 200.
inline void CheckOk(const client::HttpResponse& response) {
  if (response.status != 200)
    throw std::runtime_error("server answered " + std::to_string(response.status) + ": " +
                             response.body.substr(0, 300));
}

// POSTs every body as NDJSON to /api/v1/steps from `clients` keep-alive connections, each taking
// the next body not yet sent; client c talks to urls[c % urls.size()] (several servers on one
// database). Returns the wall-clock seconds. Throws if any request fails.
inline double PostConcurrently(const std::vector<std::string>& urls,
                               const std::vector<std::string>& bodies, int clients) {
  std::atomic<std::size_t> next = 0;
  std::atomic<bool> failed = false;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      try {
        client::HttpClient client(urls[static_cast<std::size_t>(c) % urls.size()],
                                  {.timeout = std::chrono::seconds(120)});
        for (std::size_t b = next++; b < bodies.size(); b = next++)
          CheckOk(client.Post("/api/v1/steps", bodies[b], "application/x-ndjson"));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "client: %s\n", e.what());
        failed = true;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  if (failed) throw std::runtime_error("a client failed");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double PostConcurrently(const std::string& url, const std::vector<std::string>& bodies,
                               int clients) {
  return PostConcurrently(std::vector<std::string>{url}, bodies, clients);
}

}  // namespace lossguard::bench
