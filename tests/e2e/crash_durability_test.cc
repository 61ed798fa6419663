// kill -9 while clients are ingesting: every batch the server acknowledged is there afterwards,
// byte for byte.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "e2e/e2e_util.h"
#include "lossguard/client/http_client.h"
#include "lossguard/wire/record_codec.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace crash_durability_test {

using nlohmann::json;

class KillNine : public ::testing::TestWithParam<std::string> {};

TEST_P(KillNine, NoAcknowledgedRecordIsLost) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(
      ServerProcess::Options{.db = dir.File("db"), .extra_args = {"--sync", GetParam()}});
  constexpr int kClients = 3, kBatchSize = 500, kMaxBatches = 400;
  std::vector<int> acked(kClients, 0);
  std::atomic<int> total_acked = 0;
  std::atomic<bool> stop = false;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      client::HttpClient client(server->url(), {.timeout = std::chrono::seconds(10)});
      for (int b = 0; b < kMaxBatches && !stop; ++b) {
        try {
          auto response =
              client.Post("/api/v1/steps",
                          NdjsonSteps("crash-" + std::to_string(c), b * kBatchSize, kBatchSize),
                          "application/x-ndjson");
          if (response.status != 200) return;
        } catch (const client::HttpError&) {
          return;  // the server is gone: this batch was not acknowledged
        }
        acked[c] = b + 1;
        ++total_acked;
      }
    });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (total_acked < 30 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(total_acked, 30) << "clients did not get going: " << server->StderrText();
  EXPECT_EQ(server->Stop(SIGKILL, std::chrono::seconds(10)), -SIGKILL);
  stop = true;
  for (auto& thread : clients) thread.join();
  server.reset();

  ServerProcess restarted({.db = dir.File("db")});
  client::HttpClient client(restarted.url());
  for (int c = 0; c < kClients; ++c) {
    std::string run = "crash-" + std::to_string(c);
    std::int64_t expected = static_cast<std::int64_t>(acked[c]) * kBatchSize;
    auto page = json::parse(client.Get("/api/v1/runs/" + run + "/steps?limit=100000").body);
    ASSERT_GE(page["steps"].size(), static_cast<std::size_t>(expected)) << run;
    // Every acknowledged record, exactly as sent (canonical form).
    auto sent = wire::ParseBatch(NdjsonSteps(run, 0, expected), wire::BodyFormat::kNdjson);
    ASSERT_TRUE(sent.ok());
    for (std::int64_t i = 0; i < expected; ++i) {
      ASSERT_EQ(page["steps"][i].dump(), wire::CanonicalJson(sent.value()[i]))
          << run << " step " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Durability, KillNine, ::testing::Values("full", "normal"));

}  // namespace crash_durability_test
}  // namespace lossguard::testing
